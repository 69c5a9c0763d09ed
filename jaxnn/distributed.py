"""Several processes (hosts) training as one: JAX's distributed runtime and its faults.

Every process runs the same program (SPMD). ``initialize`` joins JAX's
distributed runtime (``jax.distributed.initialize``); ``make_mesh`` builds one
mesh over the first N devices of every process, process by process, so each
process's devices hold one contiguous block of the mesh's ``"batch"`` axis.
``jaxnn.sharded`` splits the data over it, so that each process holds only
its share of the examples.

Faults. ``check_same`` exchanges each process's settings through the
runtime's key-value store and names any difference (another network, seed or
number of processes). ``Watchdog`` beats a heartbeat into that store every
second and calls ``on_lost(message)`` when another process has not beaten for
``timeout`` seconds, or reports a failure (``report_failure``), or the store is
gone. JAX's own heartbeat (``heartbeat_timeout_seconds``) is set to four times
that, so the watchdog speaks first; JAX's would abort with a stack trace. The
one fault no process can report for itself is the loss of process 0, which
hosts the coordination service: JAX's runtime then aborts the others at once
(within a second) with its own fatal message and a C++ stack trace.

This module never prints.
"""

import json
import math
import threading
import time
from collections.abc import Callable

import jax
import numpy as np
from jax.sharding import Mesh

from jaxnn import parallel
from jaxnn.validation import check_int

__all__ = [
    "DEFAULT_TIMEOUT",
    "ClusterError",
    "Watchdog",
    "any_process",
    "check_same",
    "initialize",
    "is_writer",
    "make_mesh",
    "report_failure",
    "spans_processes",
    "wait_for_others",
]

DEFAULT_TIMEOUT = 60.0  # seconds: to join, to exchange settings, to miss heartbeats


class ClusterError(RuntimeError):
    """The processes could not form a cluster, or lost one of them."""


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _check_coordinator(address: str) -> str:
    """``address`` if it is ``HOST:PORT`` with a port in 1..65535, else a ValueError."""
    host, _, port = str(address).rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"coordinator {address!r} is not HOST:PORT, e.g. 10.0.0.1:1234")
    return str(address)


def initialize(
    coordinator: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT,
    on_timeout: Callable[[str], None] | None = None,
) -> None:
    """Join the cluster: ``jax.distributed.initialize``, before any other JAX call.

    Give ``coordinator`` (``HOST:PORT`` of process 0), ``num_processes`` and
    ``process_id`` together, or none of them where JAX detects the cluster by
    itself (SLURM, a TPU pod, Open MPI). ``timeout`` bounds the wait for every
    process to join; JAX's heartbeat timeout is set to four times it (see ``Watchdog``).

    When the processes do not all join (one missing, or the coordinator told
    another ``num_processes``), JAX's runtime aborts the process with a stack
    trace rather than raising. With ``on_timeout``, that is called instead, with
    a message, after ``timeout`` seconds (JAX's own limit is then twice it); it
    is expected to end the process.

    Raises:
      ValueError: the arguments are incomplete or malformed.
      ClusterError: the cluster did not form (a process missing, another
        ``num_processes`` at the coordinator, an unreachable coordinator).
    """
    given = (coordinator, num_processes, process_id)
    if any(g is None for g in given) and any(g is not None for g in given):
        raise ValueError(
            "give --coordinator, --num-processes and --process-id together, or none of them "
            "(--distributed) where JAX detects the cluster (SLURM, a TPU pod, Open MPI)"
        )
    if coordinator is not None:
        _check_coordinator(coordinator)
        check_int(num_processes, "num_processes")
        if not 0 <= check_int(process_id, "process_id", minimum=0) < num_processes:
            raise ValueError(
                f"process id {process_id} is not in 0..{num_processes - 1} "
                f"(--num-processes {num_processes})"
            )
    if not 0 < timeout < math.inf:
        raise ValueError(f"timeout must be a finite number of seconds > 0, got {timeout}")
    where = f" at {coordinator}" if coordinator else ""
    hint = "are all processes started, with the same --coordinator and --num-processes?"
    timer = None
    if on_timeout is not None:
        expected = f"{num_processes} processes" if num_processes else "the processes"
        timer = threading.Timer(
            timeout,
            on_timeout,
            [f"{expected} did not all join{where} within {timeout:g} s; {hint}"],
        )
        timer.daemon = True
        timer.start()
    try:
        jax.distributed.initialize(
            coordinator,
            num_processes,
            process_id,
            initialization_timeout=math.ceil(timeout * (1 if timer is None else 2)),
            heartbeat_timeout_seconds=math.ceil(4 * timeout),
        )
    except (RuntimeError, ValueError, jax.errors.JaxRuntimeError) as e:
        raise ClusterError(
            f"could not join the cluster{where} ({_first_line(e)}); {hint}"
        ) from None
    finally:
        if timer is not None:
            timer.cancel()


def _client():
    """The runtime's key-value store client (jax has no public handle to it)."""
    from jax._src import distributed as jax_distributed

    client = jax_distributed.global_state.client
    if client is None:
        raise ClusterError("jax.distributed is not initialized (see jaxnn.distributed.initialize)")
    return client


def make_mesh(devices: int | None = None) -> Mesh:
    """A one-axis mesh over the first ``devices`` local devices of every process (all if None).

    Ordered process by process, so each process's devices are one contiguous
    block of the ``"batch"`` axis; with one process it is
    ``jaxnn.parallel.make_mesh(devices)``.
    """
    local = jax.local_devices()
    n = len(local) if devices is None else check_int(devices, "devices")
    by_process: dict[int, list] = {}
    for d in jax.devices():
        by_process.setdefault(d.process_index, []).append(d)
    for p, have in sorted(by_process.items()):
        if n > len(have):
            where = "this process" if p == jax.process_index() else f"process {p}"
            raise ValueError(
                f"asked for {n} devices per process, but {where} has only {len(have)} "
                f"({jax.default_backend()}); on a CPU, XLA_FLAGS="
                f"--xla_force_host_platform_device_count={n} makes that many"
            )
    chosen = [d for _, have in sorted(by_process.items()) for d in sorted(have, key=_id)[:n]]
    return Mesh(np.array(chosen), (parallel.AXIS,))


def _id(device) -> int:
    return device.id


def spans_processes(mesh: Mesh) -> bool:
    """True if the mesh's devices belong to more than one process."""
    return len({d.process_index for d in np.ravel(mesh.devices)}) > 1


def is_writer() -> bool:
    """True on process 0, the one that prints and writes the run's files."""
    return jax.process_index() == 0


def check_same(config: dict, timeout: float = DEFAULT_TIMEOUT) -> None:
    """Raise ValueError unless every process gives the same ``config`` (a JSON-able dict).

    Each process publishes its ``config`` in the runtime's key-value store and
    reads every other's; the message names each key that differs, e.g. the
    flags of the command. Nothing is exchanged on one process.
    """
    count, me = jax.process_count(), jax.process_index()
    if count == 1:
        return
    client = _client()
    client.key_value_set(f"jaxnn/config/{me}", json.dumps(config, sort_keys=True))
    for p in range(count):
        if p == me:
            continue
        try:
            theirs = json.loads(
                client.blocking_key_value_get(f"jaxnn/config/{p}", int(timeout * 1000))
            )
        except jax.errors.JaxRuntimeError as e:
            raise ClusterError(
                f"process {p} did not send its settings within {timeout:g} s ({_first_line(e)})"
            ) from None
        keys = sorted(set(config) | set(theirs))
        differ = [
            f"{k} {theirs.get(k)!r} there, {config.get(k)!r} here"
            for k in keys
            if theirs.get(k) != config.get(k)
        ]
        if differ:
            raise ValueError(
                f"process {p} was started with another command than this process ({me}): "
                f"{'; '.join(differ)}; every process must run the same command but its "
                "process id"
            )


def any_process(*flags: bool) -> bool | tuple[bool, ...]:
    """True on every process if ``flag`` is true on any (a collective: all must call it).

    With several flags, one such answer for each, in one collective (every process
    passes as many): e.g. ``stopping, saving = any_process(stopping, saving)``.
    """
    mine = np.array([bool(f) for f in flags])
    if jax.process_count() == 1:
        anyone = mine
    else:
        from jax.experimental import multihost_utils

        anyone = np.any(multihost_utils.process_allgather(mine), axis=0)
    answers = tuple(bool(f) for f in anyone)
    return answers[0] if len(answers) == 1 else answers


class Watchdog:
    """Calls ``on_lost(message)`` when another process stops responding or fails.

    A thread writes this process's heartbeat (a counter) into the runtime's
    key-value store every ``interval`` seconds and reads everyone's. A process
    whose counter has not moved for ``timeout`` seconds is lost, as is one that
    posted a failure (``report_failure``), and so is the store itself (it lives
    in process 0). ``on_lost`` runs on the watchdog's thread, once; it is
    expected to end the process (the lost process may hold a collective that
    never returns). ``stop`` marks this process as done, so the others do not
    take its silence for a fault.
    """

    def __init__(self, on_lost: Callable[[str], None], timeout: float = DEFAULT_TIMEOUT) -> None:
        self.on_lost, self.timeout = on_lost, float(timeout)
        self.lost: int | None = None  # the process found lost, once found
        self.interval = min(1.0, self.timeout / 5)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="jaxnn-watchdog", daemon=True)

    def __enter__(self) -> "Watchdog":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Mark this process as done (the others stop watching it) and end the thread."""
        if not self._stop.is_set():
            self._stop.set()
            try:
                _client().key_value_set(f"jaxnn/done/{jax.process_index()}", "1", True)
            except jax.errors.JaxRuntimeError:
                pass
            self._thread.join()

    def _run(self) -> None:
        client, me, count = _client(), jax.process_index(), jax.process_count()
        start = time.monotonic()
        last = {p: (None, start) for p in range(count) if p != me}  # (counter, when it moved)
        beat = 0
        while not self._stop.wait(self.interval):
            beat += 1
            try:
                client.key_value_set(f"jaxnn/alive/{me}", str(beat), True)
                alive = _by_process(client.key_value_dir_get("jaxnn/alive/"))
                done = _by_process(client.key_value_dir_get("jaxnn/done/"))
                failed = _by_process(client.key_value_dir_get("jaxnn/failed/"))
            except jax.errors.JaxRuntimeError as e:
                if not self._stop.is_set():
                    self.lost = 0
                    self.on_lost(
                        f"lost contact with process 0, the coordinator ({_first_line(e)}); "
                        "it died or its host is unreachable"
                    )
                return
            now = time.monotonic()
            for p, (counter, moved) in last.items():
                if p in failed:
                    self.lost = p
                    return self.on_lost(f"process {p} failed: {failed[p]}")
                if p in done:
                    continue
                if alive.get(p) != counter:
                    last[p] = (alive.get(p), now)
                elif now - moved > self.timeout:
                    self.lost = p
                    return self.on_lost(
                        f"process {p} stopped responding: no heartbeat for {self.timeout:g} s "
                        "(it died, hangs, or its host is unreachable)"
                    )


def _by_process(entries) -> dict[int, str]:
    return {int(key.rstrip("/").rpartition("/")[2]): value for key, value in entries}


def report_failure(message: str) -> None:
    """Tell the other processes' watchdogs that this one failed, with ``message``."""
    try:
        _client().key_value_set(f"jaxnn/failed/{jax.process_index()}", message, True)
    except (jax.errors.JaxRuntimeError, ClusterError):
        pass


def wait_for_others(timeout: float = DEFAULT_TIMEOUT, lost: int | None = None) -> None:
    """Wait until every other process but ``lost`` has reported a failure or finished, or
    ``timeout`` s.

    Process 0 hosts the runtime's coordination service: if it ends first, the
    others' runtime aborts them with a stack trace before they can say why.
    """
    me, count = jax.process_index(), jax.process_count()
    deadline = time.monotonic() + timeout
    try:
        client = _client()
        while time.monotonic() < deadline:
            gone = set(_by_process(client.key_value_dir_get("jaxnn/failed/")))
            gone |= set(_by_process(client.key_value_dir_get("jaxnn/done/")))
            if gone >= set(range(count)) - {me, lost}:
                time.sleep(0.5)  # for them to end after saying so
                return
            time.sleep(0.1)
    except (jax.errors.JaxRuntimeError, ClusterError):
        return
