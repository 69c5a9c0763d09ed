r"""The seed's optimizers, written by hand as optax ``GradientTransformation``\s.

Protocol (optax's, stated once): a factory such as ``adam(1e-3)`` returns
``opt`` with ``state = opt.init(params)`` and
``updates, state = opt.update(grads, state, params=None)``; the ``updates`` are
the signed steps, ``-a * (...)``, and ``optax.apply_updates(params, updates)``
adds them. So each optimizer drops into any optax loop, chains with optax
transforms (``optax.chain(optax.clip_by_global_norm(1.0), adam(1e-3))``) and
works under ``jax.jit`` on any pytree of float arrays.

The seed writes each formula for one weight matrix W with gradient dW and says
the same holds "similarly for db": here every formula applies per entry to
every leaf of the params pytree. ``a`` is the learning rate, either a float or
a schedule, a callable of the number of updates done before this one (0 at the
first), as in optax. The tags (OPT-...) are those of ``docs/optimizers.md``.

Where the denominator sqrt(S) + eps is exactly 0 (only with ``eps=0``, for an
entry whose gradient has been 0 at every step so far), the seed's formula is
0/0; jaxnn defines that step as 0, so a dead unit stays put instead of turning
into NaN. With ``eps > 0`` this never happens and nothing is changed.

``optim`` imports nothing from the network modules.
"""

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

__all__ = [
    "OPTIMIZERS",
    "AdamState",
    "MomentumState",
    "RmsPropState",
    "ScalarOrSchedule",
    "SgdState",
    "adam",
    "momentum",
    "optax_equivalent",
    "rmsprop",
    "sgd",
]

ScalarOrSchedule = float | Callable[[jax.Array], Any]

_INT32_MAX = jnp.iinfo(jnp.int32).max


def _concrete(name: str, value) -> float | None:
    """``value`` as a Python float, or None when it is traced (no check possible)."""
    if jnp.ndim(value) != 0:
        raise ValueError(f"{name} must be a scalar, got shape {jnp.shape(value)}")
    try:
        return float(value)
    except (TypeError, jax.errors.ConcretizationTypeError):
        return None


def _check_learning_rate(learning_rate: ScalarOrSchedule) -> ScalarOrSchedule:
    if callable(learning_rate):
        return learning_rate  # a schedule: its values are the caller's to choose
    a = _concrete("learning_rate", learning_rate)
    if a is not None and not 0 < a < math.inf:  # NaN fails too
        raise ValueError(
            f"learning_rate must be a finite float > 0, i.e. in (0, inf), or a schedule "
            f"(a callable of the step count), got {learning_rate!r}"
        )
    return learning_rate if a is None else a


def _check_decay(name: str, value) -> float:
    x = _concrete(name, value)
    if x is not None and not 0 <= x < 1:
        raise ValueError(f"{name} must be in [0, 1), got {value!r}")
    return value if x is None else x


def _check_eps(eps) -> float:
    x = _concrete("eps", eps)
    if x is not None and not 0 <= x < math.inf:
        raise ValueError(f"eps must be a finite float >= 0, i.e. in [0, inf), got {eps!r}")
    return eps if x is None else x


def _check_grads(grads, like, what: str) -> None:
    """Structure and shapes first, before any math; a mismatch names both sides."""
    grads_def = jax.tree_util.tree_structure(grads)
    state_def = jax.tree_util.tree_structure(like)
    if grads_def != state_def:
        raise ValueError(
            f"{what}.update: grads have tree structure {grads_def}, but the state was "
            f"initialised for params with tree structure {state_def}; pass grads with the "
            f"params' structure, or call init on params of the new structure"
        )
    for (path, g), s in zip(
        jax.tree_util.tree_leaves_with_path(grads), jax.tree_util.tree_leaves(like), strict=True
    ):
        if jnp.shape(g) != jnp.shape(s):
            where = jax.tree_util.keystr(path)
            raise ValueError(
                f"{what}.update: grads{where} has shape {jnp.shape(g)}, the state expects "
                f"{jnp.shape(s)} (the shape of params{where})"
            )


def _learning_rate_at(learning_rate: ScalarOrSchedule, count: jax.Array):
    """a for the update after ``count`` updates: a schedule sees 0 at the first."""
    return learning_rate(count) if callable(learning_rate) else learning_rate


def _descend(a, u: jax.Array) -> jax.Array:
    """The signed step -a u, with a cast to u's dtype so a float32 leaf stays float32."""
    return jnp.asarray(-a, dtype=u.dtype) * u


def _divide(num: jax.Array, den: jax.Array) -> jax.Array:
    """num / den, and 0 where den == 0 (the seed's 0/0 at eps=0; NaN still propagates)."""
    zero = den == 0
    return jnp.where(zero, 0, num / jnp.where(zero, 1, den))


def _like(tree, like):
    """``tree`` with each leaf cast to the dtype of ``like``'s: a no-op for float
    hyperparameters; array ones (``optax.inject_hyperparams``) could promote float32."""
    return jax.tree.map(lambda x, y: x.astype(y.dtype), tree, like)


def _increment(count: jax.Array) -> jax.Array:
    """count + 1, saturating at the int32 maximum instead of wrapping around."""
    return jnp.where(count < _INT32_MAX, count + 1, count)


class SgdState(NamedTuple):
    """State of ``sgd``: the number of updates done, for a schedule."""

    count: jax.Array  # shape (), int32


def sgd(learning_rate: ScalarOrSchedule) -> optax.GradientTransformation:
    r"""Plain gradient descent, the seed's update without momentum.

    .. math::
      W \leftarrow W - a \, dW   \qquad \text{(OPT-SGD)}

    Args:
      learning_rate: a float > 0, or a schedule of the update count.

    Returns:
      An ``optax.GradientTransformation``; its state is ``SgdState(count)``.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> opt = sgd(0.1)
      >>> params = {"W": jnp.array([1.0, -2.0])}
      >>> state = opt.init(params)
      >>> updates, state = opt.update({"W": jnp.array([1.0, 1.0])}, state)
      >>> print([round(w, 6) for w in optax.apply_updates(params, updates)["W"].tolist()])
      [0.9, -2.1]

    References:
      Robbins & Monro, `A Stochastic Approximation Method`, 1951.
    """
    learning_rate = _check_learning_rate(learning_rate)

    def init_fn(params):
        del params
        return SgdState(count=jnp.zeros([], jnp.int32))

    def update_fn(grads, state, params=None):
        del params
        a = _learning_rate_at(learning_rate, state.count)
        updates = jax.tree.map(lambda dW: _descend(a, dW), grads)  # (OPT-SGD)
        return updates, SgdState(count=_increment(state.count))

    return optax.GradientTransformation(init_fn, update_fn)


class MomentumState(NamedTuple):
    """State of ``momentum``: the count and V, the EMA of the gradients."""

    count: jax.Array  # shape (), int32
    mu: Any  # V, with the params' structure and dtypes


def momentum(
    learning_rate: ScalarOrSchedule, beta: float = 0.9, *, nesterov: bool = False
) -> optax.GradientTransformation:
    r"""Gradient descent with momentum in the seed's damped (EMA) form.

    .. math::
      V \leftarrow \beta V + (1 - \beta) \, dW   \qquad \text{(OPT-M1)} \\
      W \leftarrow W - a V                        \qquad \text{(OPT-M2)}

    with V starting at 0, so the first step is ``a (1 - beta) dW``. With
    ``nesterov=True`` the step looks ahead along the new V (Nesterov's momentum in
    the same EMA form):

    .. math::
      W \leftarrow W - a (\beta V + (1 - \beta) \, dW)   \qquad \text{(OPT-M3)}

    It equals ``optax.sgd(a (1 - beta), momentum=beta, nesterov=True)`` and
    scikit-learn's ``nesterovs_momentum`` at the rate ``a (1 - beta)``: with
    T = V / (1 - beta), OPT-M1 is T <- beta T + dW, and OPT-M3 is
    -a (1 - beta) (dW + beta T).

    Args:
      learning_rate: a float > 0, or a schedule of the update count.
      beta: the EMA decay, in [0, 1); ``beta=0`` is ``sgd``.
      nesterov: take the step OPT-M3 instead of OPT-M2.

    Returns:
      An ``optax.GradientTransformation``; its state is ``MomentumState(count, mu)``.

    Example:
      >>> import jax.numpy as jnp
      >>> opt = momentum(0.1, beta=0.9)
      >>> state = opt.init(jnp.zeros(2))
      >>> updates, state = opt.update(jnp.array([1.0, -1.0]), state)
      >>> print([round(u, 6) for u in updates.tolist()])  # -a (1 - beta) dW
      [-0.01, 0.01]

    References:
      Polyak, `Some methods of speeding up the convergence of iteration methods`, 1964.

    .. warning::
      ``optax.sgd(a, momentum=beta)`` and PyTorch's ``SGD(lr=a, momentum=beta)``
      are undamped: ``V = beta V + dW``. They match this one with learning rate
      ``a (1 - beta)``; see ``optax_equivalent("momentum", ...)``. PyTorch's
      ``dampening=beta`` starts V at dW, so it differs at the first step.
    """
    learning_rate = _check_learning_rate(learning_rate)
    beta = _check_decay("beta", beta)

    def init_fn(params):
        return MomentumState(
            count=jnp.zeros([], jnp.int32), mu=jax.tree.map(jnp.zeros_like, params)
        )

    def update_fn(grads, state, params=None):
        del params
        _check_grads(grads, state.mu, "momentum")
        a = _learning_rate_at(learning_rate, state.count)
        V = jax.tree.map(lambda dW, V: (1 - beta) * dW + beta * V, grads, state.mu)  # (OPT-M1)
        if nesterov:
            look_ahead = lambda dW, V: beta * V + (1 - beta) * dW
            updates = jax.tree.map(
                lambda dW, V: _descend(a, look_ahead(dW, V)), grads, V
            )  # (OPT-M3)
        else:
            updates = jax.tree.map(lambda V: _descend(a, V), V)  # (OPT-M2)
        return _like(updates, grads), MomentumState(_increment(state.count), _like(V, state.mu))

    return optax.GradientTransformation(init_fn, update_fn)


class RmsPropState(NamedTuple):
    """State of ``rmsprop``: the count and S, the EMA of the squared gradients."""

    count: jax.Array  # shape (), int32
    nu: Any  # S, with the params' structure and dtypes


def rmsprop(
    learning_rate: ScalarOrSchedule, decay: float = 0.9, eps: float = 1e-8
) -> optax.GradientTransformation:
    r"""RMSprop as in the seed, with eps outside the square root.

    .. math::
      S \leftarrow \rho S + (1 - \rho) \, dW^2                 \qquad \text{(OPT-R1)} \\
      W \leftarrow W - a \, \frac{dW}{\sqrt{S} + \epsilon}     \qquad \text{(OPT-R2)}

    with S starting at 0 and rho = ``decay``; no bias correction, no centring,
    no momentum. Where sqrt(S) + eps is 0 (``eps=0`` and an entry whose
    gradient has always been 0) the step is defined as 0.

    Args:
      learning_rate: a float > 0, or a schedule of the update count.
      decay: the EMA decay rho of the squared gradients, in [0, 1).
      eps: added to sqrt(S), >= 0.

    Returns:
      An ``optax.GradientTransformation``; its state is ``RmsPropState(count, nu)``.

    Example:
      >>> import jax.numpy as jnp
      >>> opt = rmsprop(0.01, decay=0.75, eps=0.0)
      >>> state = opt.init(jnp.zeros(2))
      >>> updates, state = opt.update(jnp.array([2.0, -0.5]), state)
      >>> print([round(u, 6) for u in updates.tolist()])  # -a sign(dW) / sqrt(1 - rho)
      [-0.02, 0.02]

    References:
      Hinton, `Neural Networks for Machine Learning`, lecture 6e, 2012.

    .. warning::
      Conventions differ on where eps sits: optax's default (``eps_in_sqrt=True``),
      Keras and ``jax.example_libraries.optimizers.rmsprop`` put it inside the
      root, sqrt(S + eps); PyTorch and ``optax.rmsprop(..., eps_in_sqrt=False)``
      put it outside, as here. TF1 starts S at 1, not 0.
    """
    learning_rate = _check_learning_rate(learning_rate)
    decay = _check_decay("decay", decay)
    eps = _check_eps(eps)

    def init_fn(params):
        return RmsPropState(count=jnp.zeros([], jnp.int32), nu=jax.tree.map(jnp.zeros_like, params))

    def update_fn(grads, state, params=None):
        del params
        _check_grads(grads, state.nu, "rmsprop")
        a = _learning_rate_at(learning_rate, state.count)
        S = jax.tree.map(lambda dW, S: (1 - decay) * dW**2 + decay * S, grads, state.nu)  # (OPT-R1)
        # dW times 1 / (sqrt(S) + eps), the order optax uses, so the two round alike.
        step = lambda dW, S: _descend(a, dW * _divide(1, jnp.sqrt(S) + eps))  # (OPT-R2)
        updates = jax.tree.map(step, grads, S)
        return _like(updates, grads), RmsPropState(_increment(state.count), _like(S, state.nu))

    return optax.GradientTransformation(init_fn, update_fn)


class AdamState(NamedTuple):
    """State of ``adam``: t, V and S (the EMAs of the gradients and their squares)."""

    count: jax.Array  # shape (), int32: t, the number of updates done
    mu: Any  # V, with the params' structure and dtypes
    nu: Any  # S, with the params' structure and dtypes


def adam(
    learning_rate: ScalarOrSchedule,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    *,
    eps_hat: bool = False,
) -> optax.GradientTransformation:
    r"""Adam as in the seed: bias-corrected moments, eps outside the square root.

    .. math::
      V \leftarrow \beta_1 V + (1 - \beta_1) \, dW          \qquad \text{(OPT-A1)} \\
      S \leftarrow \beta_2 S + (1 - \beta_2) \, dW^2        \qquad \text{(OPT-A2)} \\
      V^c = V / (1 - \beta_1^t), \quad S^c = S / (1 - \beta_2^t)   \qquad \text{(OPT-A3)} \\
      W \leftarrow W - a \, \frac{V^c}{\sqrt{S^c} + \epsilon}   \qquad \text{(OPT-A4)}

    with V and S starting at 0 and t = 1 at the first update, so the first step
    is ``-a dW / (|dW| + eps)`` whatever b1 and b2. Where sqrt(S^c) + eps is 0
    (``eps=0`` and a gradient that has always been 0) the step is defined as 0.

    With ``eps_hat=True``, the paper's "epsilon hat" form (the end of its section 2), as
    scikit-learn's ``MLPClassifier`` and Keras compute it: the bias corrections folded
    into the rate and eps added to sqrt(S) itself,

    .. math::
      W \leftarrow W - a \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
        \frac{V}{\sqrt{S} + \hat\epsilon}   \qquad \text{(OPT-A5)}

    which is (OPT-A4) with eps / sqrt(1 - beta_2^t) in place of eps: the two agree at
    eps = 0 and differ most in the first steps.

    Args:
      learning_rate: a float > 0, or a schedule of the update count.
      b1: the EMA decay beta_1 of the gradients, in [0, 1).
      b2: the EMA decay beta_2 of the squared gradients, in [0, 1).
      eps: added to sqrt(S^c), >= 0 (to sqrt(S) with ``eps_hat``).
      eps_hat: where eps sits: False (the seed's, (OPT-A4)) or True (OPT-A5).

    Returns:
      An ``optax.GradientTransformation``; its state is ``AdamState(count, mu, nu)``.

    Example:
      >>> import jax.numpy as jnp
      >>> opt = adam(0.001, eps=0.0)
      >>> state = opt.init(jnp.zeros(2))
      >>> updates, state = opt.update(jnp.array([3.0, -0.1]), state)
      >>> print([round(u, 9) for u in updates.tolist()])  # -a sign(dW) at t = 1
      [-0.001, 0.001]

    References:
      Kingma & Ba, `Adam: A Method for Stochastic Optimization
      <https://arxiv.org/abs/1412.6980>`_, 2014.

    .. warning::
      This is ``optax.adam(..., eps_root=0)``, PyTorch's ``Adam`` and
      ``jax.example_libraries.optimizers.adam``. Keras and scikit-learn fold the bias
      corrections into the learning rate and add their epsilon to sqrt(S), not sqrt(S^c)
      (the paper's "epsilon hat"): their epsilon is this eps times sqrt(1 - b2^t), a
      factor that changes with t, so the two agree only at eps = 0; ``eps_hat=True``
      computes theirs.
    """
    learning_rate = _check_learning_rate(learning_rate)
    b1 = _check_decay("b1", b1)
    b2 = _check_decay("b2", b2)
    eps = _check_eps(eps)

    def init_fn(params):
        zeros = lambda: jax.tree.map(jnp.zeros_like, params)
        return AdamState(count=jnp.zeros([], jnp.int32), mu=zeros(), nu=zeros())

    def update_fn(grads, state, params=None):
        del params
        _check_grads(grads, state.mu, "adam")
        a = _learning_rate_at(learning_rate, state.count)
        t = _increment(state.count)
        V = jax.tree.map(lambda dW, V: (1 - b1) * dW + b1 * V, grads, state.mu)  # (OPT-A1)
        S = jax.tree.map(lambda dW, S: (1 - b2) * dW**2 + b2 * S, grads, state.nu)  # (OPT-A2)
        # 1 - b^t in the default float, cast after: in float32, b2^t rounds to 1 too early.
        c1, c2 = 1 - b1**t, 1 - b2**t
        Vc = jax.tree.map(lambda V: V / c1.astype(V.dtype), V)  # (OPT-A3)
        Sc = jax.tree.map(lambda S: S / c2.astype(S.dtype), S)  # (OPT-A3)
        if eps_hat:
            a_t = a * jnp.sqrt(c2) / c1  # (OPT-A5): the corrections in the rate
            step = lambda V, S: _descend(a_t, _divide(V, jnp.sqrt(S) + eps))
            updates = jax.tree.map(step, V, S)  # (OPT-A5)
        else:
            step = lambda V, S: _descend(a, _divide(V, jnp.sqrt(S) + eps))  # (OPT-A4)
            updates = jax.tree.map(step, Vc, Sc)
        return _like(updates, grads), AdamState(t, _like(V, state.mu), _like(S, state.nu))

    return optax.GradientTransformation(init_fn, update_fn)


OPTIMIZERS = {"sgd": sgd, "momentum": momentum, "rmsprop": rmsprop, "adam": adam}


def _no_exact_equivalent_at_eps_0(name: str, eps) -> None:
    if _concrete("eps", eps) == 0:
        raise ValueError(
            f"optax_equivalent({name!r}, eps=0): no exact optax equivalent; where an "
            "entry's gradient has been 0 at every step, optax divides 0 by 0 (NaN) while "
            f"jaxnn.optim.{name} defines the step as 0; use eps > 0"
        )


def _optax_sgd(learning_rate):
    return optax.sgd(_check_learning_rate(learning_rate))


def _optax_momentum(learning_rate, beta=0.9):
    learning_rate = _check_learning_rate(learning_rate)
    beta = _check_decay("beta", beta)
    # optax.ema without debias is (OPT-M1) itself; optax.sgd(a * (1 - beta),
    # momentum=beta) is the same math with different rounding.
    return optax.chain(optax.ema(beta, debias=False), optax.scale_by_learning_rate(learning_rate))


def _optax_rmsprop(learning_rate, decay=0.9, eps=1e-8):
    learning_rate = _check_learning_rate(learning_rate)
    decay, eps = _check_decay("decay", decay), _check_eps(eps)
    _no_exact_equivalent_at_eps_0("rmsprop", eps)
    return optax.rmsprop(learning_rate, decay=decay, eps=eps, initial_scale=0.0, eps_in_sqrt=False)


def _optax_adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8):
    learning_rate = _check_learning_rate(learning_rate)
    b1, b2, eps = _check_decay("b1", b1), _check_decay("b2", b2), _check_eps(eps)
    _no_exact_equivalent_at_eps_0("adam", eps)
    return optax.adam(learning_rate, b1=b1, b2=b2, eps=eps, eps_root=0.0)


_OPTAX = {
    "sgd": _optax_sgd,
    "momentum": _optax_momentum,
    "rmsprop": _optax_rmsprop,
    "adam": _optax_adam,
}


def optax_equivalent(name: str, **hyperparameters: Any) -> optax.GradientTransformation:
    """The optax optimizer, built from optax alone, that computes the same steps.

    ``optax_equivalent(name, **kw)`` and ``OPTIMIZERS[name](**kw)`` take the same
    keyword arguments and defaults (schedules included) and give the same
    trajectories up to rounding:

    * ``sgd``: ``optax.sgd(a)``;
    * ``momentum``: ``optax.chain(optax.ema(beta, debias=False),
      optax.scale_by_learning_rate(a))``;
    * ``rmsprop``: ``optax.rmsprop(a, decay, eps, initial_scale=0, eps_in_sqrt=False)``;
    * ``adam``: ``optax.adam(a, b1, b2, eps, eps_root=0)``.

    Args:
      name: one of ``OPTIMIZERS``: ``"sgd"``, ``"momentum"``, ``"rmsprop"``, ``"adam"``.
      **hyperparameters: as for the jaxnn optimizer of that name.

    Returns:
      An ``optax.GradientTransformation``.

    Raises:
      ValueError: for an unknown name, an invalid hyperparameter (as the jaxnn
        optimizer), or ``eps=0`` for rmsprop and adam, where optax gives NaN for
        an entry whose gradient has always been 0 and jaxnn gives 0.

    Example:
      >>> import jax.numpy as jnp
      >>> ours = momentum(0.1, beta=0.5)
      >>> theirs = optax_equivalent("momentum", learning_rate=0.1, beta=0.5)
      >>> g = jnp.array([1.0, -2.0])
      >>> (u1, _), (u2, _) = ours.update(g, ours.init(g)), theirs.update(g, theirs.init(g))
      >>> bool(jnp.all(u1 == u2))
      True
    """
    if not isinstance(name, str) or name not in _OPTAX:
        valid = ", ".join(repr(k) for k in _OPTAX)
        raise ValueError(f"unknown optimizer {name!r}; valid names: {valid}")
    return _OPTAX[name](**hyperparameters)
