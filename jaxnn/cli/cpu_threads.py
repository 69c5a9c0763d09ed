"""XLA's CPU runtime on fewer threads: a small network's step is faster on one.

The command line's tuning of its own process (``jaxnn train``, ``--cpu-threads``);
no library function calls it, so importing jaxnn leaves a host's threads alone.

XLA's CPU client runs each program's kernels on a pool of threads that it sizes,
once, when JAX starts its backends: one thread per core the process may run on
(its CPU affinity then), and compiles each program for it. For a small network
most kernels take a few microseconds, and splitting them between cores costs
more than the second core gives: the default network (64-256-128-10, batch 16)
steps in about 0.12 ms with a one-thread pool against 0.14-0.18 ms with two on
the 2-core development machine, while 784-512-512-10 at batch 32 is 25-50% slower
with one (BENCHMARKS.md). The arithmetic is the same, so the bits are too: a
pool's size only decides which thread runs a kernel and how an element-wise loop
is split, never the order of a sum.

jax 0.10.2 has no setting for the pool's size. ``start_backends(threads)`` starts
JAX's backends while the calling thread may run on ``threads`` cores only, so the
pool (and XLA's other per-core pool) gets ``threads`` threads; then the caller and
every thread started meanwhile, the pool's included, get all their cores back: the
pools keep their size, and nothing stays pinned (several runs at once share the
cores as usual).

XLA also compiles for its pool: for a pool of one thread it splits no element-wise
loop in two (``outer_dimension_partitions``), and that is most of the gain (a
program compiled for one thread ran as fast on a pool of two). So a cache of
compiled programs must key on the pool's size (``pool_threads``).

All of this rests on XLA behaviour that is not documented, seen in jax 0.10.2:
the pool is sized from the affinity at the CPU client's creation, and its threads
are named ``tf_XLAEigen`` (``POOL_THREAD``, read from ``/proc/self/task``). If
XLA changes either, nothing breaks, only the gain goes: a pool sized otherwise
keeps XLA's default size (the narrowed affinity is undone all the same), and a
pool under another name counts 0 in ``pool_threads``, as on a system that does not
list threads (``jaxnn train`` then reports ``cpu_threads: 0``, "not known").
``tests/test_cpu_threads.py`` checks the pool's size and that an unknown name
degrades so.

``threads_for(net, batch_size)`` is the rule ``jaxnn train`` uses: one thread
when a step's matrix products are small (``ONE_THREAD_MAX_FLOPS``), else XLA's
own choice.

This module never prints.
"""

import os

from jaxnn.network import Network

__all__ = [
    "ONE_THREAD_MAX_FLOPS",
    "POOL_THREAD",
    "pool_threads",
    "start_backends",
    "step_flops",
    "threads_for",
]

POOL_THREAD = "tf_XLAEigen"  # the name XLA's CPU client gives its pool's threads
# The most matrix-product FLOPs in one step (forward, BP2 and BP4) at which a
# one-thread pool was faster on the 2-core machine (BENCHMARKS.md, "Small networks").
ONE_THREAD_MAX_FLOPS = 10e6


def step_flops(net: Network, batch_size: int) -> float:
    """The FLOPs of a step's matrix products: 2 m n_in n_out each for Z = W A, BP2 and
    BP4 of every layer, m the batch size (the first layer's BP2 is counted too)."""
    pairs = zip(net.sizes[:-1], net.sizes[1:], strict=True)
    return 6.0 * batch_size * sum(n_in * n_out for n_in, n_out in pairs)


def threads_for(net: Network, batch_size: int) -> int | None:
    """XLA's CPU threads for training ``net`` at ``batch_size`` on one device: 1 for a
    small step (``ONE_THREAD_MAX_FLOPS``), else None (XLA's default, one per core)."""
    return 1 if step_flops(net, batch_size) <= ONE_THREAD_MAX_FLOPS else None


def pool_threads() -> int:
    """The threads of XLA's CPU pool in this process: 0 before the backends start,
    where the system does not say (not Linux), or if XLA names them otherwise."""
    return sum(_name(tid) == POOL_THREAD for tid in _threads())


def start_backends(threads: int | None = None) -> int:
    """Start JAX's backends with ``threads`` threads in XLA's CPU pool (None: one per
    core, XLA's default); returns the pool's threads.

    Call it before anything starts the backends (a computation, ``jax.devices()``):
    once they have started, or on a system without CPU affinity (not Linux), or with
    ``threads`` at least the cores available, this only starts them, and the pool
    keeps the size it has. Compare the returned count to know.
    """
    import jax

    valid = isinstance(threads, int) and not isinstance(threads, bool) and threads >= 1
    if threads is not None and not valid:
        raise ValueError(f"threads must be a positive int or None, got {threads!r}")
    before = set(_threads())  # empty where the system does not list them
    affinity = getattr(os, "sched_getaffinity", None)
    cores = affinity(0) if affinity is not None and before else set()
    if threads is None or threads >= len(cores) or pool_threads() > 0:
        jax.devices()
        return pool_threads()
    try:
        os.sched_setaffinity(0, set(sorted(cores)[:threads]))
    except OSError:  # not allowed here (a sandbox): XLA's default pool
        jax.devices()
        return pool_threads()
    try:
        jax.devices()
    finally:  # every thread, the pool's too, back on all the cores: its size is set
        for tid in [0, *(set(_threads()) - before)]:
            try:
                os.sched_setaffinity(tid, cores)
            except OSError:  # the thread has ended
                pass
    return pool_threads()


def _threads() -> list[int]:
    try:
        return [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return []


def _name(tid: int) -> str:
    try:
        with open(f"/proc/self/task/{tid}/comm") as f:
            return f.read().strip()
    except OSError:
        return ""
