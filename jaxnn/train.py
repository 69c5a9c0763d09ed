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

One path: one device is a mesh of one device and one process a cluster of one.
``fit`` places the data split by examples over a mesh (the default device's, or
``devices=N``'s, or the ``mesh=`` given, which may span processes: each holds only
its share, ``jaxnn.sharded``), replicates the state, builds one epoch program
(``jaxnn.programs``) and loops.

Nothing here prints, and nothing changes global state; ``fit`` reports through its
``callback``.
"""

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from jax.sharding import Mesh
from jax.typing import ArrayLike

from jaxnn import parallel, sharded
from jaxnn.metrics import REPORT_HEAD, SECTIONS, metrics, report_names
from jaxnn.network import Network, Params, check_inputs, init_params, param_types
from jaxnn.programs import build, compile_programs
from jaxnn.steps import memoized
from jaxnn.validation import (
    as_real_array,
    check_batch_size,
    check_finite,
    check_int,
    check_params,
    is_labels,
    one_hot,
)

__all__ = [
    "DATA_FIELDS",
    "VAL_FIELDS",
    "Best",
    "FitResult",
    "NonFiniteCostError",
    "check_data",
    "check_hyperparameters",
    "data_fields",
    "epoch_record",
    "evaluate",
    "fit",
    "labels_as_one_hot",
    "make_init",
    "training_mesh",
]

_metrics_jit = jax.jit(metrics, static_argnames=("net", "m"))


def evaluate(params: Params, X: ArrayLike, Y: ArrayLike, net: Network) -> dict[str, float]:
    """The cost and the task's metrics on ``(X, Y)`` (columns), as Python floats:
    ``jaxnn.metrics.metrics`` with every example weighted 1, as ``fit`` reports them.

    ``"cost"`` (C-M) always; ``"accuracy"`` for classification; ``"r2"`` and
    ``"mse"`` for regression (see ``jaxnn.metrics.metrics``).
    """
    X, Y = check_inputs(params, X, net, Y)
    weights = np.ones((1, X.shape[1]), X.dtype)
    values = _metrics_jit(params, X, Y, weights, net, X.shape[1])
    return {name: float(value) for name, value in values.items()}


class FitResult(NamedTuple):
    """What ``fit`` returns."""

    params: Any  # after the last epoch run
    opt_state: Any
    history: list  # one dict per epoch, see ``fit``
    best_params: Any = None  # with a validation set: the params of ``best_epoch``
    best_epoch: int | None = None  # the epoch (from 1) of the lowest validation cost
    stopped_early: bool = False  # ``patience`` epochs passed with no better validation cost


DATA_FIELDS = ("X_train", "Y_train", "X_test", "Y_test")
VAL_FIELDS = ("X_val", "Y_val")  # optional: a validation set (early stopping)


class _Fields(NamedTuple):
    X_train: Any
    Y_train: Any
    X_test: Any
    Y_test: Any
    X_val: Any = None
    Y_val: Any = None


def data_fields(data: Any) -> tuple[str, ...]:
    """The fields of ``data`` ``fit`` reads: ``DATA_FIELDS``, and ``VAL_FIELDS`` when
    ``data.X_val`` is there and not None."""
    has_val = getattr(data, "X_val", None) is not None
    return DATA_FIELDS + VAL_FIELDS if has_val else DATA_FIELDS


def check_data(data: Any) -> None:
    """Raise ValueError unless ``data`` is fit to train on.

    ``data`` needs ``X_train, Y_train, X_test, Y_test``, and may have ``X_val,
    Y_val``: each a 2-D array of real numbers (float, int or bool) with no NaN or
    Inf; X and Y of each part with the same number m >= 1 of examples (columns).
    Shapes against the network are checked by ``fit``
    (``jaxnn.network.check_inputs``).
    """
    missing = [name for name in DATA_FIELDS if not hasattr(data, name)]
    if missing:
        raise ValueError(
            f"data lacks {', '.join(missing)}: pass a jaxnn.data.Dataset, or anything with "
            "X_train, Y_train, X_test and Y_test"
        )
    arrays = {}
    for name in data_fields(data):
        array = np.asarray(as_real_array(getattr(data, name), name))
        if array.ndim != 2:
            hint = ""
            if name[0] == "Y" and array.ndim == 1:
                hint = "; for class labels, use jaxnn.data.one_hot(labels, n_classes)"
            raise ValueError(
                f"{name} has shape {array.shape}; expected 2-D (n, m), one example per column{hint}"
            )
        arrays[name] = array
    for part in {name[2:] for name in arrays}:
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


def labels_as_one_hot(data: Any, net: Network) -> Any:
    """``data`` with integer class labels in ``Y_train`` or ``Y_test`` (shape ``(m,)``)
    turned into one-hot ``(n_L, m)`` columns; anything else as it is.

    Labels are for a softmax + cross-entropy output; a label outside ``[0, n_L)``
    is a ValueError naming it (``jaxnn.validation.one_hot``).
    """
    labelled = [n for n in data_fields(data)[1::2] if is_labels(getattr(data, n, None))]
    if not labelled or isinstance(data, sharded.Share):
        return data
    if (net.activations[-1], net.loss) != ("softmax", "cross_entropy"):
        raise ValueError(
            f"{labelled[0]} holds integer class labels, which need a softmax output with "
            f"cross_entropy; this network has {net.activations[-1]} with {net.loss}: give "
            "(n_L, m) targets"
        )
    fields = {n: getattr(data, n) for n in data_fields(data)}
    for name in labelled:
        try:
            fields[name] = one_hot(fields[name], net.sizes[-1])
        except ValueError as e:
            raise ValueError(f"{name}: {e}") from None
    return _Fields(**fields)


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


@memoized
def make_init(net: Network, optimizer: optax.GradientTransformation) -> Callable:
    """A jitted ``init(key) -> (params, opt_state)``: ``fit``'s initial state on the
    default device (``init_params`` with the first half of ``jax.random.split(key)``,
    and ``optimizer.init``), e.g. a template to restore a checkpoint into."""

    def init(key):
        init_key, _ = jax.random.split(key)
        params = init_params(init_key, net)
        return params, optimizer.init(params)

    return jax.jit(init)


def epoch_record(
    epoch: int, report: ArrayLike, net: Network, steps: int, sections: tuple[str, ...] = ("test",)
) -> dict:
    """The history record of ``epoch`` (from 1) from its report vector, as Python floats:
    ``epoch``, ``train_cost`` and ``report_names(net, sections)``.

    Raises NonFiniteCostError, naming the epoch and the step, if a batch cost,
    the parameters or the test cost is not finite.
    """
    names = REPORT_HEAD + report_names(net, sections)
    values = dict(zip(names, np.asarray(report).tolist(), strict=True))
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
    if not math.isfinite(values["test_cost"]):
        raise NonFiniteCostError(
            f"the test cost became {values['test_cost']} after epoch {epoch}", epoch, None, steps
        )
    return {"epoch": epoch, "train_cost": values["train_cost"]} | {
        name: values[name] for name in report_names(net, sections)
    }


def training_mesh(
    devices: int | None, mesh: Mesh | None, batch_axis: str | None
) -> tuple[Mesh | None, str | None]:
    """``(mesh, axis)``: the mesh ``fit`` trains on and its batch axis, or ``(None,
    None)`` for JAX's default device (a mesh of one, where arrays stay uncommitted
    as JAX's own defaults leave them).

    ``mesh`` if given (``batch_axis`` given or found, ``jaxnn.parallel.batch_axis``),
    else ``jaxnn.parallel.make_mesh(devices)`` if ``devices`` is given.
    """
    if devices is not None and mesh is not None:
        raise ValueError("give devices or mesh, not both")
    if mesh is None and devices is not None:
        mesh = parallel.make_mesh(devices)
    if mesh is None:
        return None, None
    return mesh, parallel.batch_axis(mesh, batch_axis)


def host_data(data, dtype, net: Network, params, sets=("test",)) -> dict[str, tuple]:
    """``{set: (X, Y)}`` for the training set and ``sets`` of ``data`` (its ``X_train,
    Y_train``, ``X_test, Y_test``, ...) as NumPy arrays of ``dtype``, checked against
    ``net`` (``check_inputs``; ``params`` may be types).

    Values too large for the dtype (now Inf) are caught and named here, on the host.
    """
    out = {}
    for part in ("train", *sets):
        pair = []
        for name in (f"X_{part}", f"Y_{part}"):
            source = getattr(data, name)
            with np.errstate(over="ignore"):  # values too large for dtype become Inf
                array = np.asarray(source, dtype)
            if np.dtype(getattr(source, "dtype", object)) not in (dtype, np.dtype(bool)):
                rows = "feature" if name[0] == "X" else "output"
                check_finite(array, name, rows, f" after conversion to {dtype}")
            pair.append(array)
        check_inputs(params, pair[0], net, pair[1])
        out[part] = tuple(pair)
    return out


def _key_data(key) -> tuple[np.ndarray, str | None]:
    """A key as its raw data and its implementation's name (None for a raw uint32 key)."""
    if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        return np.asarray(jax.random.key_data(key)), str(jax.random.key_impl(key))
    return np.asarray(key), None


def _cache_name(optimizer: optax.GradientTransformation, settings: tuple) -> str | None:
    """What fit's programs close over, for a ``ProgramCache``: every argument of
    ``jaxnn.programs.build`` but the optimizer (``settings``), and the optimizer's
    ``fingerprint``; None if the optimizer cannot be read without tracing it (then
    nothing is kept)."""
    from jaxnn.program_cache import fingerprint

    try:
        optimizer_id = fingerprint(tuple(optimizer))
    except TypeError:
        return None
    return f"fit {settings!r} optimizer={optimizer_id}"


def fit(
    net: Network,
    optimizer: optax.GradientTransformation,
    data: Any,
    epochs: int,
    batch_size: int,
    key: jax.Array,
    *,
    callback: Callable | None = None,
    gradients: str = "hand",
    params: Params | None = None,
    opt_state: Any = None,
    start_epoch: int = 0,
    history: Sequence[dict] = (),
    devices: int | None = None,
    mesh: Mesh | None = None,
    batch_axis: str | None = None,
    program_cache: Any = None,
    weight_decay: float = 0.0,
    patience: int | None = None,
    best_params: Params | None = None,
    train_metrics: bool = False,
) -> FitResult:
    """Train ``net`` on ``data`` by minibatch descent, ``epochs`` epochs in all.

    Each epoch is one compiled call (``jaxnn.programs``): a ``lax.scan`` over
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
        state are replicated on the mesh and the data split by examples over
        it; the results come back replicated, and they equal the single-device
        results up to the rounding of the gradient's sum over examples, taken in
        another order. On a mesh over several processes
        (``jaxnn.distributed.make_mesh``) each process keeps only its share of
        the data (``jaxnn.sharded``); ``data`` may be that share already.
      batch_axis: the mesh axis that splits the examples; found if None (the
        mesh's only axis, or its ``"batch"`` axis; ``jaxnn.parallel.batch_axis``).
        A share is split over the ``"batch"`` axis.
      program_cache: a ``jaxnn.program_cache.ProgramCache``: fit's two programs
        (the start and the epoch) are loaded from it, not traced, when a process
        before this one stored them (``jax.export``), and both compile at once.
        The optimizer is read for the key (``program_cache.fingerprint``); one
        that cannot be read is traced as usual, nothing kept.
      weight_decay: lambda >= 0, L2 on the weights as scikit-learn's ``alpha``:
        each batch's cost is C + lambda / (2 B) sum ||W^[l]||^2 (C-L2) and dC/dW^[l]
        gains lambda W^[l] / B (BP4-L2). The test and validation costs are C alone.
      patience: with a validation set (``data.X_val``, ``data.Y_val``), stop once
        this many epochs in a row brought no validation cost lower than the best
        so far (early stopping); None: run every epoch. With a validation set,
        ``best_params`` and ``best_epoch`` say the epoch of the lowest validation
        cost, early stopping or not.
      best_params: resuming with a validation set: the params of the history's best
        epoch (its checkpoint), so the result's ``best_params`` is right even when
        no later epoch beats it.
      train_metrics: also report the task's metrics on the training set
        (``train_accuracy``, or ``train_r2`` and ``train_mse``) as running metrics,
        as ``train_cost`` is: over the examples of the epoch's batches, each batch
        taken with the params before its update (the Keras convention), from the
        steps' own forward passes (``jaxnn.metrics.running_metrics``), so nearly
        free; not the metrics of the params after the epoch (``evaluate`` gives
        those).

    Returns:
      ``FitResult(params, opt_state, history, best_params, best_epoch,
      stopped_early)``. ``history`` has one dict per epoch: ``epoch`` (from 1),
      ``train_cost`` (the mean of that epoch's batch costs, each taken before its
      step), ``test_<name>`` for every metric of ``evaluate`` on the test set, and
      ``val_<name>`` (after the epoch, as ``test_``) and ``train_<name>`` (running,
      see ``train_metrics``) where asked.

    Raises:
      ValueError: bad arguments or data (see ``check_data``), before training.
      NonFiniteCostError: a batch cost, the parameters or the test cost became
        NaN or Inf; raised before ``callback`` sees that epoch.
    """
    check_int(epochs, "epochs", minimum=0)
    if not 0 <= start_epoch <= epochs:
        raise ValueError(f"start_epoch must be in [0, epochs = {epochs}], got {start_epoch}")
    check_hyperparameters(weight_decay, patience)
    data = labels_as_one_hot(data, net)
    check_data(data)
    if params is not None:
        check_params(params, net.sizes)
        params = list(params)  # a tuple would not match the structure of the gradients
    if isinstance(data, sharded.Share) and mesh is None:
        raise ValueError("a jaxnn.sharded.Share needs mesh= (jaxnn.distributed.make_mesh)")
    mesh, axis = training_mesh(devices, mesh, batch_axis)
    share = sharded.as_share(data, mesh, axis)  # this process's examples, padded
    check_batch_size(batch_size, share.m_train)
    if mesh is not None:
        parallel.check_divisible(batch_size, mesh, axis=axis)
    sections = tuple(
        s for s in SECTIONS if s == "test" or (s == "train" and train_metrics) or
        (s == "val" and share.X_val is not None)
    )  # fmt: skip

    # The state's types (nothing computed), the data placed, the programs built.
    rep = parallel.replicated(mesh)
    ptypes = param_types(net) if params is None else jax.tree.map(_type, params)
    stypes = jax.eval_shape(optimizer.init, ptypes) if opt_state is None else opt_state
    state_types = [_type(x, rep) for x in jax.tree.leaves((ptypes, stypes))]
    data_args, sizes = _placed_sets(share, sections, net, ptypes, mesh, axis)
    key_data, key_impl = _key_data(key)
    key_data = parallel.replicate(key_data, mesh)
    state_tree = jax.tree.structure((ptypes, stypes))
    settings = (net, batch_size, gradients, mesh, axis, sizes, state_tree, key_impl,
                float(weight_decay), sections)  # fmt: skip
    programs = build(net, optimizer, *settings[1:])
    name = _cache_name(optimizer, settings) if program_cache else None
    data_args[3] = key_data
    data_args[4] = _type(np.int32(0), rep)
    init_args = (key_data,) if params is None else None
    epoch_args = (*state_types, *data_args)
    init, epoch = compile_programs(programs, init_args, epoch_args, name, name and program_cache)

    state = _start_state(init, key_data, params, opt_state, state_tree, optimizer, mesh)

    steps = share.m_train // batch_size
    history = list(history)
    best = Best.of(history, best_params) if "val" in sections else None
    stopped_early = False
    for e in range(start_epoch, epochs):
        data_args[4] = parallel.replicate(np.int32(e), mesh)
        *state, report = epoch(*state, *data_args)
        history.append(epoch_record(e + 1, report, net, steps, sections))
        params, opt_state = jax.tree.unflatten(state_tree, state)
        if best is not None:
            best = best.after(history[-1], params)
            stopped_early = patience is not None and e + 1 - best.epoch >= patience
        if callback is not None and callback(e + 1, params, opt_state, history):
            break
        if stopped_early:
            break
    params, opt_state = jax.tree.unflatten(state_tree, state)
    if best is None:
        return FitResult(params, opt_state, history)
    return FitResult(params, opt_state, history, best.params, best.epoch, stopped_early)


def _placed_sets(share, sections, net, ptypes, mesh, axis) -> tuple[list, tuple]:
    """The epoch program's data arguments (the training set's ``X, Y, weights``, two
    places for the key and the epoch, then each other evaluated set's), placed over the
    mesh, and the sets' sizes (the training set's, then ``sections``')."""
    dtype = np.dtype(ptypes[0]["W"].dtype)
    sets = {"train": share.m_train} | {s: getattr(share, f"m_{s}") for s in sections}
    host = host_data(share, dtype, net, ptypes, [s for s in sets if s != "train"])
    placed = {s: sharded.place(*host[s], m, mesh, axis) for s, m in sets.items()}
    data_args = [*placed["train"], None, None]
    for s in sets:
        data_args += [] if s == "train" else list(placed[s])
    return data_args, tuple(sets[s] for s in ("train", *sections))


def _start_state(init, key_data, params, opt_state, state_tree, optimizer, mesh) -> list:
    """The state's leaves to start from, on the mesh: made by ``init`` unless ``params``
    are given (then ``optimizer.init`` unless ``opt_state`` is); given values placed."""
    if params is None:  # made on the mesh; a given opt_state is placed there
        state = init(key_data)
        if opt_state is None:
            return state
        made_params, _ = jax.tree.unflatten(state_tree, state)
        return jax.tree.leaves((made_params, parallel.replicate(opt_state, mesh)))
    params = parallel.replicate(params, mesh)
    if opt_state is None:
        opt_state = jax.jit(optimizer.init, out_shardings=parallel.replicated(mesh))(params)
    else:
        opt_state = parallel.replicate(opt_state, mesh)
    return jax.tree.leaves((params, opt_state))


class Best(NamedTuple):
    """The epoch of the lowest validation cost so far (``fit``'s early stopping)."""

    epoch: int  # 0: none yet
    cost: float
    params: Any

    @classmethod
    def of(cls, history: list, params) -> "Best":
        """The best epoch of a (resumed) ``history``, with its ``params`` if known."""
        best = cls(0, math.inf, None)
        for record in history:
            best = best.after(record, params)
        return best

    def after(self, record: dict, params) -> "Best":
        """This, or the epoch of ``record`` if its validation cost is lower."""
        if record.get("val_cost", math.inf) < self.cost:
            return Best(record["epoch"], record["val_cost"], params)
        return self


def check_hyperparameters(weight_decay: float, patience: int | None) -> None:
    """Raise ValueError unless ``weight_decay`` is a finite number >= 0 and ``patience``
    None or an integer >= 1."""
    if not isinstance(weight_decay, (int, float)) or not 0 <= weight_decay < math.inf:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {weight_decay!r}")
    if patience is not None:
        check_int(patience, "patience", minimum=1)


def _type(x, sharding=None) -> jax.ShapeDtypeStruct:
    """``x``'s shape and dtype (an array's, or a type's), with ``sharding``."""
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding)
