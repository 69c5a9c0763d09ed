"""The estimators' fit as one compiled program: every epoch in one ``lax.while_loop``.

scikit-learn's MLP runs its epochs in Python and checks after each whether to stop;
here the whole run, its stopping rules included, is one call of one jitted
function, so a fit costs one dispatch whatever its number of epochs, and

* the hyperparameters that are numbers (learning rate, alpha, betas, epsilon,
  momentum, power_t, tol, n_iter_no_change, max_iter) are traced arguments
  (``Hyper``): a grid search over them compiles once per network shape;
* the number m of real examples is traced too: the training set is padded with
  rows whose weight is 0 (``jaxnn.weighted``) up to ``padded_size(m)``, so the folds
  of a cross-validation and the refit on the whole set share one program;
* what fixes the program's shapes or its code is static (``Static``): the
  network, the solver, the batch's shape, the number of steps per epoch.

An epoch (scikit-learn's ``_fit_stochastic``): a permutation of the m real
examples drawn from scikit-learn's random stream (``shuffled_orders``; their order
with ``shuffle=False``), ``ceil(m / B)`` batches of it, the
last one partial; each batch one step of the weighted cost (C-W) with weight
decay (C-L2) and its hand gradient (BP1-W), BP2-BP4, (BP4-L2), or
``jax.value_and_grad`` of the same cost with ``gradients="autodiff"``. The epoch's
loss is the mean of the batch costs weighted by their sizes, as scikit-learn's
``loss_curve_`` (whose squared error is also divided by the number of outputs: its
gradient is not, so the steps are the same). After each epoch the stopping rule of scikit-learn's
``_update_no_improvement_count`` and ``trigger_stopping``: the training loss (or,
with early stopping, the validation score) must improve by ``tol`` within
``n_iter_no_change`` epochs, else the run stops (``learning_rate="adaptive"``:
the learning rate is divided by 5 instead, until it is below 1e-6). A non-finite
loss stops the run too; the caller raises.
"""

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxnn import optim
from jaxnn.metrics import metrics
from jaxnn.network import Network, Params, forward_unchecked
from jaxnn.regularization import l2_penalty
from jaxnn.steps import GRADIENTS
from jaxnn.weighted import value_and_backprop_weighted, weighted_cost

__all__ = [
    "CPU_COMPILER_OPTIONS",
    "ORDER_ENTRIES",
    "PAD",
    "SCHEDULES",
    "SOLVERS",
    "Hyper",
    "Progress",
    "Result",
    "Static",
    "capacity",
    "make_optimizer",
    "padded_size",
    "run",
    "run_jit",
    "shuffled_orders",
    "zero_state",
]

SOLVERS = ("adam", "sgd", "rmsprop")
SCHEDULES = ("constant", "invscaling", "adaptive")  # scikit-learn's learning_rate, for sgd
PAD = 32  # the fewest rows a padded set has (``padded_size``)
# The most row indices (epochs x padded rows) one call takes in ``orders``: 128 MiB of
# int32. A longer fit of a large set runs as several calls of up to that many epochs.
ORDER_ENTRIES = 2**25
ADAPTIVE_FLOOR = 1e-6  # learning_rate="adaptive" stops once the rate is at or below this
ADAPTIVE_FACTOR = 5.0  # ... and divides it by this each time the loss stalls


class Static(NamedTuple):
    """What compiles: a new value is a new program."""

    net: Network
    solver: str  # one of SOLVERS
    nesterov: bool  # sgd: Nesterov's momentum (OPT-M3)
    schedule: str  # one of SCHEDULES; "constant" for every solver but sgd
    batch: int  # the batch's shape B (m itself when a batch holds the whole set)
    steps: int  # batches per epoch in the program: ceil(padded m / B); ceil(m / B) run
    shuffle: bool
    early_stopping: bool
    gradients: str  # "hand" or "autodiff"
    capacity: int  # epochs the loss curve can hold: max_iter rounded up (``capacity``)


class Hyper(NamedTuple):
    """What is traced: a new value reuses the program. Scalars (Python or 0-d arrays)."""

    learning_rate_init: float
    alpha: float  # lambda of (C-L2)
    beta_1: float
    beta_2: float  # adam's; rmsprop's decay rho
    epsilon: float
    momentum: float  # sgd's, scikit-learn's: the EMA's beta (OPT-M1)
    power_t: float  # invscaling
    tol: float
    n_iter_no_change: int
    epochs: int  # at most this many epochs in this call (max_iter; 1 for partial_fit)


class Progress(NamedTuple):
    """What one call hands the next (warm_start, partial_fit): scalars."""

    learning_rate: float  # the current rate (invscaling and adaptive change it)
    best_loss: float  # lowest training loss so far (inf at the start)
    best_score: float  # highest validation score so far (-inf at the start)
    no_improvement: int  # epochs in a row without an improvement by tol
    samples: float  # t_, examples seen since the first fit (invscaling's time step)


class Result(NamedTuple):
    """What ``run`` returns (arrays; the caller fetches them in one transfer)."""

    params: list
    opt_state: object
    best_params: list  # with early stopping: those of the best validation score
    progress: Progress
    losses: jax.Array  # (capacity,): the loss of each epoch run, then NaN
    scores: jax.Array  # (capacity,): the validation score of each epoch run, then NaN
    epochs: jax.Array  # epochs run in this call
    stopped: jax.Array  # True if the stopping rule ended the run (not the epoch limit)
    finite: jax.Array  # False if a loss or a parameter became NaN or Inf


def padded_size(m: int) -> int:
    """The rows a set of m examples is given: the next power of two (at least ``PAD``),
    so that cross-validation's folds and the refit on the whole set share one program;
    above ``2**16``, the next multiple of ``2**12`` (at most 6% more rows)."""
    if m > 2**16:
        return -(-m // 2**12) * 2**12
    return max(PAD, 1 << (m - 1).bit_length())


def shuffled_orders(
    random_state: np.random.RandomState, order: np.ndarray, rows: int, epochs: int
) -> np.ndarray:
    """The order of the rows in each of ``epochs`` epochs, ``(epochs, rows)`` int32, drawn
    as scikit-learn's ``_fit_stochastic`` draws them: each epoch shuffles the last
    epoch's ``order`` (of the m real rows) by ``random_state.shuffle`` of ``arange(m)``
    (``sklearn.utils.shuffle``), so a ``random_state`` gives scikit-learn's batches. The
    padding rows ``m .. rows - 1`` follow in every epoch."""
    m = len(order)
    orders = np.empty((epochs, rows), np.int32)
    orders[:, m:] = np.arange(m, rows)
    for e in range(epochs):
        idx = np.arange(m)
        random_state.shuffle(idx)
        order = order[idx]
        orders[e, :m] = order
    return orders


def capacity(max_iter: int) -> int:
    """The loss curve's buffer for ``max_iter`` epochs: the next power of two, so that
    nearby values of ``max_iter`` share a program."""
    return 1 << max(0, max_iter - 1).bit_length()


def make_optimizer(static: Static, hyper: Hyper) -> optax.GradientTransformation:
    """The solver as a jaxnn optimizer (its rate fixed: see ``_epoch`` for sgd's schedules).

    ``adam``: scikit-learn's, eps beside sqrt(v) before the bias correction, (OPT-A5).

    ``sgd``: scikit-learn's momentum is undamped, v <- mu v - a_t g; the seed's EMA form
    (OPT-M1, OPT-M2) with beta = mu, at the constant rate a_0 / (1 - mu) and fed the
    gradient times a_t / a_0, equals it step for step (v = -(a_0 / (1 - mu)) V), and with
    ``nesterov`` (OPT-M3) its Nesterov form; mu = 0 is plain SGD. a_t is the schedule's
    rate (``Progress.learning_rate``), a_0 ``learning_rate_init``.
    """
    a0 = hyper.learning_rate_init
    if static.solver == "adam":
        return optim.adam(a0, hyper.beta_1, hyper.beta_2, hyper.epsilon, eps_hat=True)
    if static.solver == "rmsprop":
        return optim.rmsprop(a0, hyper.beta_2, hyper.epsilon)
    mu = hyper.momentum
    return optim.momentum(a0 / (1 - mu), mu, nesterov=static.nesterov)


def zero_state(static: Static, hyper: Hyper, params: Params) -> Any:
    """The solver's starting state for ``params``: its ``init``, as NumPy zeros, with
    no compile (``jax.eval_shape`` gives the structure)."""
    optimizer = make_optimizer(static, hyper)
    shapes = jax.eval_shape(optimizer.init, params)
    return jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes)


def _value_and_grad(static: Static):
    if static.gradients == "hand":
        return value_and_backprop_weighted
    if static.gradients == "autodiff":
        return jax.value_and_grad(weighted_cost)
    raise ValueError(f"unknown gradients {static.gradients!r}; valid: {', '.join(GRADIENTS)}")


def _score(params, X, Y, w, m, net: Network) -> jax.Array:
    """scikit-learn's ``score`` on the weighted columns: accuracy (every output right:
    the argmax for softmax, a > 0.5 per logistic unit) or R^2 (``jaxnn.metrics``)."""
    if net.loss == "mse":
        return metrics(params, X, Y, w[None, :], net, m)["r2"]
    A = forward_unchecked(params, X, net).A[-1]
    if net.activations[-1] == "softmax":
        right = jnp.argmax(A, axis=0) == jnp.argmax(Y, axis=0)
    else:
        right = jnp.all((A > 0.5) == (Y > 0.5), axis=0)
    return jnp.sum(w * right) / m


def _epoch(static: Static, hyper: Hyper, state, X, Y, m, order):
    """One epoch: ``(params, opt_state, loss)``; see the module docstring."""
    params, opt_state, learning_rate = state
    B, n_pad = static.batch, X.shape[0]
    value_and_grad = _value_and_grad(static)
    optimizer = make_optimizer(static, hyper)
    scale = learning_rate / hyper.learning_rate_init  # a_t / a_0: 1 but for sgd's schedules
    order = jnp.concatenate([order, jnp.full((static.steps * B - n_pad,), n_pad - 1)])
    n_batches = -(-m // B)

    def step(carry, k):
        def run_step(carry):
            params, opt_state, total = carry
            idx = lax.dynamic_slice(order, (k * B,), (B,))
            w = (k * B + jnp.arange(B) < m).astype(X.dtype)  # (BP1-W): the partial batch
            c, grads = value_and_grad(params, X[idx].T, Y[idx].T, w, static.net, hyper.alpha)
            if static.net.loss == "mse":  # scikit-learn reports the squared error per output
                penalty = l2_penalty(params, jnp.sum(w), hyper.alpha)  # (C-L2)
                c = (c - penalty) / static.net.sizes[-1] + penalty
            if static.schedule != "constant":
                grads = jax.tree.map(lambda g: g * scale.astype(g.dtype), grads)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = jax.tree.map(lambda p, u: p + u, params, updates)
            return params, opt_state, total + c * jnp.sum(w)

        return lax.cond(k < n_batches, run_step, lambda carry: carry, carry), None

    zero = jnp.zeros((), X.dtype)
    (params, opt_state, total), _ = lax.scan(
        step, (params, opt_state, zero), jnp.arange(static.steps)
    )
    return params, opt_state, total / m


def run(
    static: Static,
    hyper: Hyper,
    params: Params,
    opt_state: Any,
    best_params: Params,
    progress: Progress,
    X: jax.Array,
    Y: jax.Array,
    m: int | jax.Array,
    X_val: jax.Array,
    Y_val: jax.Array,
    m_val: int | jax.Array,
    orders: jax.Array,
) -> Result:
    """Up to ``hyper.epochs`` epochs from ``params``; see the module docstring.

    ``X`` ``(padded m, n_x)`` and ``Y`` ``(padded m, n_L)``: rows, one example each,
    the first m real; the same for the validation set (ignored unless
    ``static.early_stopping``). ``orders`` ``(capacity, padded m)``: row e the order
    in which epoch e of this call takes the rows (``shuffled_orders``), unused unless
    ``static.shuffle``.
    """
    dtype = X.dtype
    w_val = (jnp.arange(X_val.shape[0]) < m_val).astype(dtype)
    nan = jnp.full((static.capacity,), jnp.nan, dtype)

    def cond(carry):
        *_, e, stop, finite = carry
        return (e < hyper.epochs) & ~stop & finite

    def body(carry):
        params, opt_state, best, p, losses, scores, e, _, _ = carry
        order = orders[e] if static.shuffle else jnp.arange(X.shape[0])
        params, opt_state, loss = _epoch(
            static, hyper, (params, opt_state, p.learning_rate), X, Y, m, order
        )
        samples = p.samples + m
        if static.early_stopping:  # _update_no_improvement_count, on the validation score
            score = _score(params, X_val.T, Y_val.T, w_val, m_val, static.net)
            stalled = score < p.best_score + hyper.tol
            better = score > p.best_score
            best = jax.tree.map(lambda new, old: jnp.where(better, new, old), params, best)
            best_loss, best_score = p.best_loss, jnp.maximum(score, p.best_score)
        else:  # ... on the training loss
            score = jnp.asarray(jnp.nan, dtype)
            stalled = loss > p.best_loss - hyper.tol
            best_loss, best_score = jnp.minimum(loss, p.best_loss), p.best_score
        no_improvement = jnp.where(stalled, p.no_improvement + 1, 0)
        rate = p.learning_rate
        if static.schedule == "invscaling":  # iteration_ends: a_0 / (t + 1)^power_t
            rate = hyper.learning_rate_init / (samples + 1) ** hyper.power_t
        triggered = no_improvement > hyper.n_iter_no_change
        if static.schedule == "adaptive":  # trigger_stopping: divide by 5 until <= 1e-6
            stop = triggered & (rate <= ADAPTIVE_FLOOR)
            lowered = triggered & ~stop
            rate = jnp.where(lowered, rate / ADAPTIVE_FACTOR, rate)
            no_improvement = jnp.where(lowered, 0, no_improvement)
        else:
            stop = triggered
        finite = jnp.isfinite(loss) & jnp.all(
            jnp.stack([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(params)])
        )
        p = Progress(
            jnp.asarray(rate, p.learning_rate.dtype),
            jnp.asarray(best_loss, dtype),
            jnp.asarray(best_score, dtype),
            no_improvement.astype(p.no_improvement.dtype),
            samples,
        )
        losses, scores = losses.at[e].set(loss), scores.at[e].set(score)
        return params, opt_state, best, p, losses, scores, e + 1, stop, finite

    progress = Progress(*(jnp.asarray(x) for x in progress))
    carry = (params, opt_state, best_params, progress, nan, nan, 0, False, True)
    params, opt_state, best, progress, losses, scores, e, stop, finite = lax.while_loop(
        cond, body, carry
    )
    return Result(params, opt_state, best, progress, losses, scores, e, stop, finite)


# XLA's options on the CPU: LLVM at level 1 instead of 2 compiles the program in 2.3-2.8 s
# instead of 3.4-4.0 s (digits, one hidden layer of 64, batch 32; a 60-example set) and
# runs it as fast (0.079 s for 30 epochs either way; 2-core machine, load ~6).
CPU_COMPILER_OPTIONS = {"xla_backend_optimization_level": 1}
_RUN = {
    "cpu": jax.jit(run, static_argnums=0, compiler_options=CPU_COMPILER_OPTIONS),
    "other": jax.jit(run, static_argnums=0),
}


def run_jit(*args: Any) -> Result:
    """``run``, jitted (``static`` is its static argument), with ``CPU_COMPILER_OPTIONS``
    on the CPU."""
    return _RUN["cpu" if jax.default_backend() == "cpu" else "other"](*args)
