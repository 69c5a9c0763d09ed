"""Training: a jitted step, an epoch of minibatches in one ``lax.scan``, evaluate, fit.

Minibatches (the choice for a last partial batch): an epoch draws a fresh
permutation of the m training examples and runs ``floor(m / B)`` full batches of
B examples from it; the ``m mod B`` examples left over are not used in that
epoch. Every step therefore sees the same batch shape (one compilation, no
masks, every step's cost a mean over B examples), and since the permutation is
new each epoch, every example is seen equally often on average. A batch larger
than the training set is an error.

Randomness: ``fit(..., key)`` splits ``key`` into an init key and a shuffle
key; epoch ``e`` (0-based) is shuffled with ``jax.random.fold_in(shuffle_key,
e)``, a function of (key, e) alone, so a run resumed at epoch e draws exactly
the batches the uninterrupted run would have drawn.

Bad input and divergence: ``fit`` checks its data before training
(``check_data``: four 2-D arrays of real numbers, finite, with matching and
non-zero numbers of examples) and stops with a ``NonFiniteCostError``, naming
the epoch and the step, as soon as an epoch's cost turns NaN or Inf, before
``callback`` sees that epoch (so a checkpointing callback keeps the last good
one).

Several devices: ``fit(..., devices=N)`` or ``fit(..., mesh=mesh)`` splits
each batch over the devices (``jaxnn.parallel``). Several processes: a mesh
that spans them, or a ``jaxnn.sharded.Share`` as the data, splits the data by
examples, each process holding its share (``make_share_train_epoch``).

Nothing here prints; ``fit`` reports through its ``callback``.
"""

import functools
import math
import types
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxnn import losses, parallel, sharded
from jaxnn.data import one_hot
from jaxnn.executables import fingerprint, fingerprint_and_types
from jaxnn.network import (
    Network,
    check_inputs,
    forward,
    init_params,
    output_cost,
    param_types,
)
from jaxnn.steps import GRADIENTS as GRADIENTS
from jaxnn.steps import epoch_batches as epoch_batches
from jaxnn.steps import epoch_fn
from jaxnn.steps import make_epoch as make_epoch
from jaxnn.steps import make_step as make_step
from jaxnn.validation import (
    as_real_array,
    check_batch_size,
    check_finite,
    check_int,
    check_params,
    is_labels,
)


def task_of(net: Network) -> str:
    """``"classification"`` or ``"regression"``: the task of the network's output head
    (``jaxnn.losses.HEADS``)."""
    return losses.head(net.activations[-1], net.loss).task


def main_metric(task: str) -> str:
    """The metric the history and the CLI report for a task: ``"accuracy"`` or ``"r2"``."""
    return next(h.metric for h in losses.HEADS if h.task == task)


def _metrics(params, X, Y, net: Network):
    cache = forward(params, X, net)
    A = cache.A[-1]
    out = {"cost": output_cost(cache, Y, net)}
    if task_of(net) == "classification":
        if net.activations[-1] == "softmax":
            correct = jnp.argmax(A, axis=0) == jnp.argmax(Y, axis=0)
        else:  # sigmoid: predict 1 where a > 0.5, i.e. z > 0; per output unit
            correct = (A > 0.5) == (Y > 0.5)
        out["accuracy"] = jnp.mean(correct.astype(A.dtype))
    else:
        residual = jnp.sum((Y - A) ** 2, axis=1)
        total = jnp.sum((Y - jnp.mean(Y, axis=1, keepdims=True)) ** 2, axis=1)
        # Constant targets: R^2 is 1 for a perfect fit, else 0 (scikit-learn's convention).
        r2 = jnp.where(
            total > 0, 1 - residual / jnp.where(total > 0, total, 1), 1.0 * (residual == 0)
        )
        out["r2"] = jnp.mean(r2)
        out["mse"] = jnp.mean((A - Y) ** 2)
    return out


_metrics_jit = jax.jit(_metrics, static_argnames="net")


def evaluate(params, X, Y, net: Network) -> dict[str, float]:
    """The cost and the task's metrics on ``(X, Y)``, as Python floats.

    * every task: ``"cost"``, the network's cost (C-M);
    * classification (``task_of(net)``): ``"accuracy"``, the fraction of
      examples whose class is right: argmax over the outputs for softmax; for
      sigmoid outputs, ``a > 0.5`` against ``y > 0.5`` per output unit (with one
      unit, the fraction of examples);
    * regression: ``"r2"``, the coefficient of determination 1 - SS_res / SS_tot
      per output row, averaged over the rows (scikit-learn's ``r2_score``), and
      ``"mse"``, the mean of (a - y)^2 over all entries (no 1/2, unlike the cost).
    """
    X, Y = check_inputs(params, X, net, Y)
    return {name: float(value) for name, value in _metrics_jit(params, X, Y, net).items()}


class FitResult(NamedTuple):
    """What ``fit`` returns."""

    params: Any
    opt_state: Any
    history: list  # one dict per epoch, see ``fit``


DATA_FIELDS = ("X_train", "Y_train", "X_test", "Y_test")


def check_data(data) -> None:
    """Raise ValueError unless ``data`` is fit to train on.

    ``data`` needs ``X_train, Y_train, X_test, Y_test``: each a 2-D array of
    real numbers (float, int or bool) with no NaN or Inf; X and Y of each part
    with the same number m >= 1 of examples (columns). Shapes against the
    network are checked by ``fit`` (``jaxnn.network.check_inputs``).
    """
    missing = [name for name in DATA_FIELDS if not hasattr(data, name)]
    if missing:
        raise ValueError(
            f"data lacks {', '.join(missing)}: pass a jaxnn.data.Dataset, or anything with "
            "X_train, Y_train, X_test and Y_test"
        )
    arrays = {}
    for name in DATA_FIELDS:
        array = np.asarray(as_real_array(getattr(data, name), name))
        if array.ndim != 2:
            hint = ""
            if name[0] == "Y" and array.ndim == 1:
                hint = "; for class labels, use jaxnn.data.one_hot(labels, n_classes)"
            raise ValueError(
                f"{name} has shape {array.shape}; expected 2-D (n, m), one example per column{hint}"
            )
        arrays[name] = array
    for part in ("train", "test"):
        X, Y = arrays[f"X_{part}"], arrays[f"Y_{part}"]
        if X.shape[1] != Y.shape[1]:
            raise ValueError(
                f"X_{part} has {X.shape[1]} examples (columns) but Y_{part} has "
                f"{Y.shape[1]}; they need one column per example each"
            )
        if X.shape[1] == 0:
            raise ValueError(f"the {part} set is empty: X_{part} has shape {X.shape}")
    for name, array in arrays.items():
        check_finite(array, name, "feature" if name[0] == "X" else "output")


def labels_as_one_hot(data, net: Network):
    """``data`` with integer class labels in ``Y_train`` or ``Y_test`` (shape ``(m,)``)
    turned into one-hot ``(n_L, m)`` columns; anything else as it is.

    Labels are for a softmax + cross-entropy output; a label outside ``[0, n_L)``
    is a ValueError naming it (``jaxnn.data.one_hot``).
    """
    labelled = [n for n in ("Y_train", "Y_test") if is_labels(getattr(data, n, None))]
    if not labelled or isinstance(data, sharded.Share):
        return data
    if (net.activations[-1], net.loss) != ("softmax", "cross_entropy"):
        raise ValueError(
            f"{labelled[0]} holds integer class labels, which need a softmax output with "
            f"cross_entropy; this network has {net.activations[-1]} with {net.loss}: give "
            "(n_L, m) targets"
        )
    fields = {n: getattr(data, n) for n in DATA_FIELDS}
    for name in labelled:
        try:
            fields[name] = one_hot(fields[name], net.sizes[-1])
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return types.SimpleNamespace(**fields)


class NonFiniteCostError(ValueError):
    """Training diverged: a cost, or the parameters, became NaN or Inf.

    Raised by ``fit`` before its callback sees the epoch, so a checkpointing
    callback keeps the last good epoch.

    Attributes:
      epoch: the epoch in which it happened, counting from 1 as ``history`` does.
      step: the batch within that epoch, from 1, whose cost (taken before its
        update) was the first non-finite one; None if every batch cost was
        finite but the parameters or the test cost were not, after the epoch.
      steps: the number of batches (steps) per epoch.
    """

    def __init__(self, message: str, epoch: int, step: int | None, steps: int):
        super().__init__(message)
        self.epoch, self.step, self.steps = epoch, step, steps


# What the compiled epoch reports, in this order, in one vector (one transfer):
# the mean batch cost, the first non-finite batch (from 0; -1 if none) and its cost,
# whether every parameter is finite (1 or 0), then ``metric_names(net)`` on the test set.
REPORT_HEAD = ("train_cost", "first_bad_step", "first_bad_cost", "params_finite")


def metric_names(net: Network) -> tuple[str, ...]:
    """The names ``evaluate`` returns for this network, in order."""
    return ("cost", "accuracy") if task_of(net) == "classification" else ("cost", "r2", "mse")


def epoch_report(params, costs, test: dict, net: Network) -> jax.Array:
    """The epoch's report as one vector (see ``REPORT_HEAD``), computed on the device.

    ``test``: the test metrics, ``{name: scalar}`` for ``metric_names(net)`` (the
    metrics of ``evaluate``, or ``jaxnn.sharded.weighted_metrics`` on a share).
    """
    bad = ~jnp.isfinite(costs)
    first = jnp.argmax(bad)  # the first True; 0 if none
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)]))
    values = [
        jnp.mean(costs),
        jnp.where(bad[first], first, -1),
        costs[first],
        finite,
        *(test[name] for name in metric_names(net)),
    ]
    return jnp.stack([jnp.asarray(v, costs.dtype) for v in values])


def make_train_epoch(
    net: Network,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    gradients: str = "hand",
    mesh=None,
    batch_axis: str | None = None,
) -> Callable:
    """``fit``'s epoch: ``(params, opt_state, X, Y, key, e, X_test, Y_test) -> (params,
    opt_state, report)`` in one compiled call.

    ``key`` is ``fit``'s key and ``e`` the epoch's number from 0; the batches are
    drawn with ``epoch_key(key, e)``.

    The epoch of ``make_epoch`` (or ``jaxnn.parallel.make_parallel_epoch`` on a
    mesh), followed in the same program by the test evaluation, the finite checks
    and the mean cost, packed into one vector (``epoch_report``), so that an epoch
    is one dispatch and one device-to-host transfer. Cached like ``make_epoch``.
    """
    try:
        return _make_train_epoch_cached(net, optimizer, batch_size, gradients, mesh, batch_axis)
    except TypeError:  # an unhashable optimizer: build it afresh
        return _make_train_epoch(net, optimizer, batch_size, gradients, mesh, batch_axis)


def _make_train_epoch(net, optimizer, batch_size, gradients, mesh, batch_axis=None):
    if mesh is None:
        epoch = epoch_fn(net, optimizer, batch_size, gradients)
    else:  # jitted with the mesh's shardings, inlined into the program below
        epoch = parallel.make_parallel_epoch(
            net, optimizer, batch_size, mesh, gradients, batch_axis
        )

    def train_epoch(params, opt_state, X, Y, key, e, X_test, Y_test):
        params, opt_state, costs = epoch(params, opt_state, X, Y, epoch_key(key, e))
        test = _metrics(params, X_test, Y_test, net)
        return params, opt_state, epoch_report(params, costs, test, net)

    return jax.jit(train_epoch)


_make_train_epoch_cached = functools.lru_cache(maxsize=16)(_make_train_epoch)


def make_share_train_epoch(
    net: Network,
    optimizer: optax.GradientTransformation,
    batch_size: int,
    gradients: str,
    mesh,
    m_train: int,
    m_test: int,
) -> Callable:
    """``make_train_epoch`` on data split by examples over ``mesh`` (a ``jaxnn.sharded.Share``).

    ``(params, opt_state, X, Y, key, e, X_test, Y_test, weights) -> (params,
    opt_state, report)``, one compiled call over every process; every input a
    global array on the mesh: params, opt_state, ``key`` (``sharded.replicated_key``)
    and ``e`` replicated, the data and the test weights as ``sharded.place`` gives
    them. The epoch is ``sharded.share_epoch_fn``'s (the batches of one device's
    epoch over the m_train real examples), the test metrics
    ``sharded.weighted_metrics`` (the padding weighted 0), the report
    ``epoch_report``'s. Cached like ``make_train_epoch``.
    """
    args = (net, optimizer, batch_size, gradients, mesh, m_train, m_test)
    try:
        return _make_share_train_epoch_cached(*args)
    except TypeError:  # an unhashable optimizer: build it afresh
        return _make_share_train_epoch(*args)


def _make_share_train_epoch(net, optimizer, batch_size, gradients, mesh, m_train, m_test):
    epoch = sharded.share_epoch_fn(net, optimizer, batch_size, m_train, mesh, gradients)
    task = task_of(net)

    def train_epoch(params, opt_state, X, Y, key, e, X_test, Y_test, weights):
        params, opt_state, costs = epoch(params, opt_state, X, Y, epoch_key(key, e))
        test = sharded.weighted_metrics(params, X_test, Y_test, weights, net, m_test, task)
        return params, opt_state, epoch_report(params, costs, test, net)

    rep, bat = parallel.replicated(mesh), sharded.sharding(mesh)
    return jax.jit(
        train_epoch,
        in_shardings=(rep, rep, bat, bat, rep, rep, bat, bat, bat),
        out_shardings=(rep, rep, rep),
    )


_make_share_train_epoch_cached = functools.lru_cache(maxsize=16)(_make_share_train_epoch)


def share_training(net, optimizer, batch_size, gradients, mesh, share, state) -> tuple:
    """``fit``'s set-up on a ``jaxnn.sharded.Share``: ``(train_epoch, params, opt_state,
    (X, Y, X_test, Y_test))``, every array global on ``mesh``.

    ``train_epoch`` has ``make_train_epoch``'s signature, so ``fit``'s loop is the
    same on every path; it places the key and the epoch number replicated and
    passes the test weights to ``make_share_train_epoch``'s program.
    """
    params, opt_state = state
    arrays = host_data(share, params, net)
    check_inputs(params, arrays["X_train"], net, arrays["Y_train"])
    check_inputs(params, arrays["X_test"], net, arrays["Y_test"])
    placed = sharded.place(share, [arrays[name] for name in DATA_FIELDS], mesh)
    params, opt_state = parallel.replicate((params, opt_state), mesh)
    compiled = make_share_train_epoch(
        net, optimizer, batch_size, gradients, mesh, share.m_train, share.m_test
    )

    def train_epoch(params, opt_state, X, Y, key, e, X_test, Y_test):
        key, e = sharded.replicated_key(key, mesh), parallel.replicate(np.int32(e), mesh)
        return compiled(params, opt_state, X, Y, key, e, X_test, Y_test, placed.weights)

    return train_epoch, params, opt_state, placed[:4]


def epoch_key(key, e) -> jax.Array:
    """The key that shuffles epoch ``e`` (from 0) of ``fit(..., key)``: a function of
    (key, e) alone, so a resumed run draws the batches the whole run would have."""
    _, shuffle_key = jax.random.split(key)
    return jax.random.fold_in(shuffle_key, e)


# XLA's options for the start's program when fit compiles it on the CPU
# (``kept_training``; elsewhere XLA's defaults): it runs once, so its compile time is
# what counts. LLVM at level 1 instead of 2 compiles the default network's start in
# 0.51 s instead of 0.85 s (its threefry draws are most of it) and gives the same bits
# (tests/test_executables.py checks they equal ``make_init``'s default compile); the
# epoch keeps level 2 (its bits differ there, and at MNIST scale level 1 ran 29% slower).
INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}


def make_init(net: Network, optimizer: optax.GradientTransformation) -> Callable:
    """A jitted ``init(key) -> (params, opt_state)`` with ``fit``'s initial state:
    ``init_params`` with the init key of ``fit(..., key)`` (the first half of
    ``jax.random.split(key)``) and ``optimizer.init``, in one compiled call, not op
    by op. Cached per (net, optimizer)."""
    try:
        return _make_init_cached(net, optimizer)
    except TypeError:
        return _make_init(net, optimizer)


def _make_init(net, optimizer):
    def init(key):
        init_key, _ = jax.random.split(key)
        params = init_params(init_key, net)
        return params, optimizer.init(params)

    return jax.jit(init)


_make_init_cached = functools.lru_cache(maxsize=16)(_make_init)


def epoch_record(epoch: int, report, net: Network, steps: int) -> dict:
    """The history record of ``epoch`` (from 1) from its report vector, as Python floats.

    Raises NonFiniteCostError, naming the epoch and the step, if a batch cost,
    the parameters or the test cost is not finite.
    """
    values = dict(zip(REPORT_HEAD + metric_names(net), np.asarray(report).tolist(), strict=True))
    if values["first_bad_step"] >= 0:
        step = int(values["first_bad_step"]) + 1
        raise NonFiniteCostError(
            f"the cost became {values['first_bad_cost']} at step {step} of {steps} in epoch "
            f"{epoch} (a smaller learning rate may help)",
            epoch,
            step,
            steps,
        )
    if not values["params_finite"]:
        raise NonFiniteCostError(
            f"the parameters became non-finite (NaN or Inf) in epoch {epoch}, though "
            f"each of its {steps} batch costs was finite",
            epoch,
            None,
            steps,
        )
    if not math.isfinite(values["cost"]):
        raise NonFiniteCostError(
            f"the test cost became {values['cost']} after epoch {epoch}", epoch, None, steps
        )
    record = {"epoch": epoch, "train_cost": values["train_cost"]}
    record.update({f"test_{name}": values[name] for name in metric_names(net)})
    return record


def resolve_mesh(batch_size: int, devices: int | None, mesh, batch_axis: str | None = None):
    """The mesh ``fit`` splits batches over (None for one device), checked against B."""
    if devices is None and mesh is None:
        return None
    if devices is not None and mesh is not None:
        raise ValueError("give devices or mesh, not both")
    mesh = mesh if mesh is not None else parallel.make_mesh(devices)
    parallel.check_divisible(batch_size, mesh, axis=batch_axis)
    return mesh


def start_state(net, optimizer, key, params, opt_state):
    """The params and optimizer state to start from: given, or made in one compiled call."""
    if params is None:
        made, made_state = make_init(net, optimizer)(key)
        params, opt_state = made, made_state if opt_state is None else opt_state
    check_params(params, net.sizes)
    params = list(params)  # a tuple would not match the structure of the gradients
    if opt_state is None:
        opt_state = jax.jit(optimizer.init)(params)
    return params, opt_state


def kept_training(executables, net, optimizer, batch_size, gradients, key, data, state, start):
    """``fit``'s set-up on one device with a ``jaxnn.executables.ExecutableCache``:
    ``(train_epoch, params, opt_state, (X, Y, X_test, Y_test))``.

    The start (``make_init``, unless ``state`` gives the params; on the CPU compiled
    with ``INIT_COMPILER_OPTIONS``) and the epoch (``make_train_epoch``, for the start's
    types: ``param_types`` and the optimizer's traced ``init``) are loaded or
    compiled at the same time (``compile_many``). Their names add what they close
    over besides the optimizer: the network, the batch size, the gradients.
    """
    params, opt_state = state
    if params is not None:
        params, opt_state = start_state(net, optimizer, key, params, opt_state)
    # The types, and what the optimizer computes whatever the caller's recipe says,
    # from one trace of its init and one of its update (the params' types need none).
    ptypes = param_types(net) if params is None else jax.tree.map(_type, params)
    init_id, stypes = fingerprint_and_types(optimizer.init, ptypes)
    if opt_state is not None:
        stypes = jax.tree.map(_type, opt_state)
    update_id = fingerprint(optimizer.update, ptypes, stypes, ptypes)
    X, Y, X_test, Y_test = device_data(data, ptypes, net)
    optimizer_id = [init_id, update_id]
    what = f"{net!r} batch_size={batch_size} gradients={gradients} optimizer={optimizer_id}"
    epoch = make_train_epoch(net, optimizer, batch_size, gradients)
    args = (ptypes, stypes, X, Y, key, np.int32(start), X_test, Y_test)
    requests = [(epoch, args, f"train_epoch {what}")]
    if params is None:
        init = make_init(net, optimizer)
        options = INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
        requests.append((init, (key,), f"init {what}", options))
    train_epoch, *starts = executables.compile_many(requests)
    if params is None:
        params, made_state = starts[0](key)
        params, opt_state = list(params), made_state if opt_state is None else opt_state
    return train_epoch, params, opt_state, (X, Y, X_test, Y_test)


def _type(x) -> jax.ShapeDtypeStruct:
    """``x``'s type, with its sharding if ``x`` is an array committed to a device."""
    t = jax.typeof(x)
    committed = isinstance(x, jax.Array) and x.committed
    sharding = x.sharding if committed else None
    return jax.ShapeDtypeStruct(t.shape, t.dtype, weak_type=t.weak_type, sharding=sharding)


def host_data(data, params, net: Network) -> dict[str, np.ndarray]:
    """``data``'s four arrays (``DATA_FIELDS``) as NumPy arrays in the params' dtype.

    Values too large for the dtype (now Inf) are caught and named here, on the host.
    """
    dtype = np.dtype(jax.tree.leaves(params)[0].dtype)
    arrays = {}
    for name in DATA_FIELDS:
        source = getattr(data, name)
        with np.errstate(over="ignore"):  # values too large for dtype become Inf, caught here
            array = np.asarray(source, dtype)
        if np.dtype(getattr(source, "dtype", object)) not in (dtype, np.dtype(bool)):
            rows = "feature" if name[0] == "X" else "output"
            check_finite(array, name, rows, f" after conversion to {dtype}")
        arrays[name] = array
    return arrays


def device_data(data, params, net: Network) -> tuple:
    """``(X, Y, X_test, Y_test)`` in the params' dtype on the device, checked against ``net``.

    The cast happens on the host (``host_data``), before the one transfer of each array.
    """
    # a transfer each; jnp.asarray would compile
    arrays = {name: jax.device_put(a) for name, a in host_data(data, params, net).items()}
    X, Y = check_inputs(params, arrays["X_train"], net, arrays["Y_train"])
    X_test, Y_test = check_inputs(params, arrays["X_test"], net, arrays["Y_test"])
    return X, Y, X_test, Y_test


def fit(
    net: Network,
    optimizer: optax.GradientTransformation,
    data,
    epochs: int,
    batch_size: int,
    key,
    *,
    callback: Callable | None = None,
    gradients: str = "hand",
    params=None,
    opt_state=None,
    start_epoch: int = 0,
    history=(),
    devices: int | None = None,
    mesh=None,
    batch_axis: str | None = None,
    executables=None,
) -> FitResult:
    """Train ``net`` on ``data`` by minibatch descent, ``epochs`` epochs in all.

    Each epoch is one compiled call (``make_train_epoch``): a ``lax.scan`` over
    ``floor(m / batch_size)`` full batches of a fresh permutation (see the
    module docstring), the evaluation on the test set and the finite checks,
    and one transfer of the epoch's report to the host.

    Args:
      net: the ``Network``.
      optimizer: an ``optax.GradientTransformation``, e.g. ``jaxnn.optim.adam(1e-3)``.
      data: a ``jaxnn.data.Dataset``, or anything with ``X_train, Y_train,
        X_test, Y_test`` in the column layout ``(n, m)``. For softmax with
        cross-entropy, ``Y_train`` and ``Y_test`` may be integer class labels of
        shape ``(m,)`` (``labels_as_one_hot``). They are cast to the
        params' dtype.
      epochs: the total number of epochs; with ``start_epoch``, the target, so
        ``epochs - start_epoch`` epochs run.
      batch_size: B, from 1 to the number of training examples.
      key: a ``jax.random`` key; ``split`` into the init key (unused when
        ``params`` is given) and the shuffle key.
      callback: called after every epoch as ``callback(epoch, params, opt_state,
        history)``, ``epoch`` counting from 1; e.g. for progress or checkpoints.
        If it returns a true value, training stops after that epoch (e.g. on a
        signal) and ``fit`` returns what it has.
      gradients: ``"hand"`` or ``"autodiff"``, as in ``make_step``.
      params: start from these instead of ``init_params(init_key, net)``.
      opt_state: start from this instead of ``optimizer.init(params)``.
      start_epoch: the number of epochs already done (to resume a run: with
        the same key, the result is the same as one run of ``epochs``).
      history: the history of those epochs, continued.
      devices: split every batch over this many devices
        (``jaxnn.parallel.make_mesh(devices)``); ``batch_size`` must divide by it.
      mesh: or over the devices of this ``jax.sharding.Mesh``: any mesh, from
        ``jax.make_mesh`` (Explicit or Auto axes, any names) or
        ``jaxnn.parallel.make_mesh``. With either, params, optimizer state and
        data are replicated on the mesh, the results come back replicated, and
        they equal the single-device results up to the rounding of the
        gradient's sum over examples, taken in another order. A mesh over
        several processes (``jaxnn.distributed.make_mesh``), or ``data`` given
        as a ``jaxnn.sharded.Share``, shards the data by examples instead: each
        process keeps only its share (``jaxnn.sharded``); same results.
      batch_axis: the mesh axis that splits the examples; found if None (the
        mesh's only axis, or its ``"batch"`` axis; ``jaxnn.parallel.batch_axis``).
        A share is split over the ``"batch"`` axis.
      executables: a ``jaxnn.executables.ExecutableCache`` whose recipe describes
        ``optimizer``: on one device, fit's two programs (the start and the
        epoch) are loaded from it, not traced and compiled, when a process
        before this one stored them. Ignored on a mesh.

    Returns:
      ``FitResult(params, opt_state, history)``. ``history`` has one dict per
      epoch: ``epoch`` (from 1), ``train_cost`` (the mean of that epoch's batch
      costs, each taken before its step) and ``test_<name>`` for every metric of
      ``evaluate`` on the test set.

    Raises:
      ValueError: bad arguments or data (see ``check_data``), before training.
      NonFiniteCostError: a batch cost, the parameters or the test cost became
        NaN or Inf; raised before ``callback`` sees that epoch.
    """
    check_int(epochs, "epochs", minimum=0)
    if not 0 <= start_epoch <= epochs:
        raise ValueError(f"start_epoch must be in [0, epochs = {epochs}], got {start_epoch}")
    data = labels_as_one_hot(data, net)
    check_data(data)
    m_train = data.m_train if isinstance(data, sharded.Share) else np.shape(data.X_train)[1]
    check_batch_size(batch_size, m_train)
    mesh = resolve_mesh(batch_size, devices, mesh, batch_axis)
    # Several processes (jaxnn.sharded): keep only this process's share of the examples.
    share = sharded.as_share(data, mesh, batch_axis)
    state = (params, opt_state)
    if executables is not None and mesh is None and share is None:
        train_epoch, params, opt_state, arrays = kept_training(
            executables, net, optimizer, batch_size, gradients, key, data, state, start_epoch
        )
    elif share is None:
        params, opt_state = start_state(net, optimizer, key, *state)
        arrays = device_data(data, params, net)
        if mesh is not None:
            params, opt_state, *arrays = parallel.replicate((params, opt_state, *arrays), mesh)
        train_epoch = make_train_epoch(net, optimizer, batch_size, gradients, mesh, batch_axis)
    else:
        params, opt_state = start_state(net, optimizer, key, *state)
        train_epoch, params, opt_state, arrays = share_training(
            net, optimizer, batch_size, gradients, mesh, share, (params, opt_state)
        )
    X, Y, X_test, Y_test = arrays
    steps = m_train // batch_size
    history = list(history)
    for e in range(start_epoch, epochs):
        params, opt_state, report = train_epoch(
            params, opt_state, X, Y, key, np.int32(e), X_test, Y_test
        )
        history.append(epoch_record(e + 1, report, net, steps))
        if callback is not None and callback(e + 1, params, opt_state, history):
            break
    return FitResult(params, opt_state, history)
