"""``fit``'s two programs on a mesh: the start and the epoch, functions of flat arrays.

One device is a mesh of one and one process a cluster of one, so there is one
path (on JAX's default device, ``mesh=None``, the same program without shardings,
so its arrays stay uncommitted as JAX leaves them): the training and test sets
are split by examples over the mesh's batch axis
(``jaxnn.sharded``: each process holds only its share, padded to a multiple of the
devices), the parameters and the optimizer state are replicated, and each batch
is split over the batch axis inside the epoch (``jaxnn.parallel.take_batch``).

* ``init(key_data) -> state leaves``: ``init_params`` with the init key of
  ``fit(..., key)`` (the first half of ``jax.random.split(key)``) and
  ``optimizer.init``, in one compiled call. It runs once, so on the CPU it is
  compiled with ``INIT_COMPILER_OPTIONS``.
* ``epoch(*state leaves, X, Y, weights, key_data, e, X_test, Y_test, test weights,
  ...) -> (*state leaves, report)``: ``jaxnn.steps.epoch_fn`` (a ``lax.scan`` of
  steps over the batches of ``epoch_key(key, e)``), then ``jaxnn.metrics.metrics``
  on the test set (and on the validation set, if given) and ``epoch_report``, one
  vector: an epoch is one dispatch and one transfer. The training set's metrics,
  if asked, are running ones: each step also gives its batch's
  ``jaxnn.metrics.task_sums`` from its own forward pass (before its update), and
  ``jaxnn.metrics.running_metrics`` adds them up over the epoch's batches, as
  ``train_cost`` is the mean of the batch costs; no second pass over the training set.

Both take and give flat lists of arrays (the state's tree is ``state_tree``), and
the key as its raw data, so that ``jaxnn.program_cache`` can keep them on disk
with ``jax.export`` (whose files hold no Python objects).
"""

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import optax
from jax.sharding import Mesh

from jaxnn import parallel
from jaxnn.metrics import epoch_report, metrics, running_metrics, task_sums
from jaxnn.network import Network, init_params
from jaxnn.steps import epoch_fn, epoch_key, memoized

__all__ = ["INIT_COMPILER_OPTIONS", "Programs", "build", "compile_programs"]

# XLA's options for the start's program on the CPU: it runs once, so its compile time
# is what counts. LLVM at level 1 instead of 2 compiles the default network's start in
# 0.51 s instead of 0.85 s (its threefry draws are most of it) and gives the same bits
# (tests/test_train.py checks them against the default compile); the epoch keeps
# level 2 (its bits differ there, and at MNIST scale level 1 ran 29% slower).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


class Programs(NamedTuple):
    """``fit``'s jitted programs (see the module docstring) and what they are compiled for."""

    init: Callable
    epoch: Callable
    state_tree: jax.tree_util.PyTreeDef  # of (params, opt_state)
    init_options: dict | None  # XLA options of ``init`` (``INIT_COMPILER_OPTIONS`` on the CPU)


@memoized
def build(
    net: Network,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    gradients: str,
    mesh: Mesh | None,
    axis: str | None,
    sizes: tuple[int, ...],
    state_tree: jax.tree_util.PyTreeDef,
    key_impl: str | None,
    weight_decay: float = 0.0,
    sections: tuple[str, ...] = ("test",),
) -> Programs:
    """``fit``'s programs for these settings (memoized: the same arguments give the same
    jitted functions).

    ``sizes``: the real examples of the training set and of each set in ``sections``
    (``jaxnn.metrics.SECTIONS``, in that order; the sets may be padded); ``key_impl``:
    the PRNG implementation of a typed key, None for a raw one; ``weight_decay``: L2
    on the weights (C-L2), (BP4-L2); ``"train"`` in ``sections``: the training set's
    running metrics (the steps' ``task_sums``, ``running_metrics``). The epoch takes
    the training set as ``X, Y, weights`` and then each evaluated set but the
    training set as ``X, Y, weights``.
    """
    rep, bat = parallel.replicated(mesh), parallel.batch_sharding(mesh, axis)
    take = parallel.take_batch(mesh, axis)
    m_train, m_eval = sizes[0], dict(zip(sections, sizes[1:], strict=True))
    # The training set's metrics run over the epoch's batches: each step's own output.
    sums = (lambda A, Y: task_sums(A, Y, net)) if "train" in sections else None
    epoch = epoch_fn(net, optimizer, batch_size, gradients, take, examples=m_train,
                     weight_decay=weight_decay, output=sums)  # fmt: skip
    n = state_tree.num_leaves
    others = [section for section in sections if section != "train"]

    def key_of(key_data):
        return key_data if key_impl is None else jax.random.wrap_key_data(key_data, impl=key_impl)

    def init(key_data):
        init_key, _ = jax.random.split(key_of(key_data))
        params = init_params(init_key, net)
        return jax.tree.leaves((params, optimizer.init(params)))

    def train_epoch(*args):
        params, opt_state = jax.tree.unflatten(state_tree, args[:n])
        # The training set's weights go unused: its batches draw only its m_train real
        # examples. Every set still comes as X, Y, weights, one layout for all.
        X, Y, _, key_data, e, *rest = args[n:]
        params, opt_state, costs, *batch_sums = epoch(
            params, opt_state, X, Y, epoch_key(key_of(key_data), e)
        )
        sets = {s: tuple(rest[3 * i : 3 * i + 3]) for i, s in enumerate(others)}
        evaluated = {
            s: running_metrics(batch_sums[0], net)
            if s == "train"
            else metrics(params, *sets[s], net, m_eval[s])
            for s in sections
        }
        return [*jax.tree.leaves((params, opt_state)), epoch_report(params, costs, evaluated, net)]

    platform = jax.default_backend() if mesh is None else mesh.devices.flat[0].platform
    options = INIT_COMPILER_OPTIONS if platform == "cpu" else None
    if mesh is None:  # JAX's default device: shardings left to JAX, arrays uncommitted
        return Programs(
            jax.jit(init, compiler_options=options), jax.jit(train_epoch), state_tree, options
        )
    data = (bat, bat, bat, rep, rep) + (bat, bat, bat) * len(others)
    return Programs(
        jax.jit(init, out_shardings=rep, compiler_options=options),
        jax.jit(train_epoch, in_shardings=(rep,) * n + data, out_shardings=rep),
        state_tree,
        options,
    )


def compile_programs(
    programs: Programs,
    init_args: tuple | None,
    epoch_args: tuple,
    name: str,
    cache: Any = None,
) -> tuple:
    """``(init, epoch)`` ready to call: ``programs``' own jitted functions, or with a
    ``jaxnn.program_cache.ProgramCache`` both loaded (or exported and stored) and
    compiled at the same time. ``init_args`` None: the start is not needed (the
    caller gave the params). ``name`` says what the programs close over."""
    if cache is None:
        return programs.init, programs.epoch
    requests = [(programs.epoch, epoch_args, f"train_epoch {name}")]
    if init_args is not None:
        requests.append((programs.init, init_args, f"init {name}", programs.init_options))
    epoch, *init = cache.compile_many(requests)
    return (init[0] if init else None), epoch
