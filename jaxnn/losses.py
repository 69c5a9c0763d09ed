"""Costs: each per-example cost C beside its hand-written gradient grad_a C.

All functions take ``A`` (the network's output A^[L]) and ``Y`` of shape
``(n_L, m)``, one example per column, and return per-example costs of shape
``(m,)`` or a gradient of shape ``(n_L, m)``; those that sum over an example's
outputs take ``axis``, the axis of units (1 for ``(m, n_L)`` rows, ``jaxnn.rows``).
The network's cost is the mean of the per-example costs over the m examples
(see ``jaxnn.cost``).

Three forms of each cost live here:
  * ``value(A, Y)``: the seed's formula, literally, from the activations;
  * ``stable_value(Z, A, Y)``: the same number computed from the output layer's
    pre-activation Z through log-softmax / log-sigmoid, finite and exact for
    |Z| in the thousands, where ``log(A)`` would give ``log(0) = -inf``;
  * ``grad(A, Y)``: grad_a C, the seed's table, used by BP1 when ``fused=False``.
Beside them, ``*_target_grad(Z, A, Y)``: dC/dy, the cost differentiated in its
target from the stable form, which ``jaxnn.cost_with_hand_gradients`` returns as
the cotangent of ``Y`` (by name in ``TARGET_GRADS``). The fused output errors
delta^L = dC/dZ^L, closed forms of BP1 for the pairs where one exists, are in
``HEADS``, the table of output heads (activation + loss: fused delta, its tag,
the task and its metric) that every other module reads.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import xlogy

__all__ = [
    "HEADS",
    "LOSSES",
    "TARGET_GRADS",
    "Head",
    "Loss",
    "binary_cross_entropy",
    "binary_cross_entropy_grad",
    "binary_cross_entropy_stable",
    "binary_cross_entropy_target_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "cross_entropy_stable",
    "cross_entropy_target_grad",
    "get",
    "head",
    "linear_mse_delta",
    "mse",
    "mse_grad",
    "mse_stable",
    "mse_target_grad",
    "sigmoid_binary_cross_entropy_delta",
    "softmax_cross_entropy_delta",
]


class Loss(NamedTuple):
    """A cost with its gradient, and the output activations it accepts."""

    name: str
    value: Callable[..., jax.Array]  # value(A, Y, axis=0)
    stable_value: Callable[..., jax.Array]  # stable_value(Z, A, Y, axis=0)
    grad: Callable[[jax.Array, jax.Array], jax.Array]
    outputs: tuple[str, ...] | None  # valid output activations; None: any


def mse(A, Y, axis: int = 0):
    """C = 1/2 sum_j (y_j - a_j)^2   (C1)"""
    return 0.5 * jnp.sum((Y - A) ** 2, axis=axis)


def mse_stable(Z, A, Y, axis: int = 0):
    """(C1): already exact; Z is unused."""
    del Z
    return mse(A, Y, axis)


def mse_grad(A, Y):
    """grad_a C = a - y   (G1)"""
    return A - Y


def mse_target_grad(Z, A, Y, axis: int = 0):
    """dC/dy = d/dy 1/2 sum_j (y_j - a_j)^2 = y - a   (G-Y1); Z is unused."""
    del Z, axis
    return Y - A  # (G-Y1)


def binary_cross_entropy(A, Y, axis: int = 0):
    """C = -sum_j [y_j log a_j + (1 - y_j) log(1 - a_j)]   (C2)

    The seed writes this without the leading minus sign; that is an erratum (it
    would be maximised, and its gradient is the negative of the seed's (G2)).
    ``xlogy`` makes 0 log 0 = 0, the limit, for targets of exactly 0 or 1.
    """
    return -jnp.sum(xlogy(Y, A) + xlogy(1 - Y, 1 - A), axis=axis)


def binary_cross_entropy_stable(Z, A, Y, axis: int = 0):
    """(C2) with log a = log sigmoid(z) and log(1 - a) = log sigmoid(-z)."""
    del A
    return -jnp.sum(Y * jax.nn.log_sigmoid(Z) + (1 - Y) * jax.nn.log_sigmoid(-Z), axis=axis)


def binary_cross_entropy_grad(A, Y):
    """grad_a C = -y / a + (1 - y) / (1 - a)   (G2)

    A term whose target factor is zero is zero, so a = 0 with y = 0 (or a = 1
    with y = 1) gives the limit 0 rather than 0/0.
    """
    safe_a = jnp.where(Y == 0, 1, A)
    safe_1ma = jnp.where(Y == 1, 1, 1 - A)
    return -Y / safe_a + (1 - Y) / safe_1ma  # (G2)


def binary_cross_entropy_target_grad(Z, A, Y, axis: int = 0):
    """dC/dy = -(log sigma(z) - log sigma(-z)) = -z   (G-Y2), from (C2) as computed."""
    del A, Y, axis
    # log sigma(z) - log sigma(-z) = z exactly: finite for any z, where the
    # seed's form, log(a) - log(1 - a), is inf at a = 1.
    return -Z  # (G-Y2)


def cross_entropy(A, Y, axis: int = 0):
    """C = -sum_k y_k log a_k   (C3)"""
    return -jnp.sum(xlogy(Y, A), axis=axis)


def cross_entropy_stable(Z, A, Y, axis: int = 0):
    """(C3) with log a = log_softmax(z) = z - logsumexp(z)."""
    del A
    return -jnp.sum(Y * jax.nn.log_softmax(Z, axis=axis), axis=axis)


def cross_entropy_grad(A, Y):
    """grad_a C = -y / a   (G3); zero where y = 0."""
    return -Y / jnp.where(Y == 0, 1, A)  # (G3)


def cross_entropy_target_grad(Z, A, Y, axis: int = 0):
    """d/dy_k -sum_j y_j log_softmax(z)_j = -log_softmax(z)_k   (G-Y3), from (C3) as computed."""
    del A, Y
    return -jax.nn.log_softmax(Z, axis=axis)  # (G-Y3)


# Fused output errors: delta^L = dC/dZ^L for one example, in closed form.
def softmax_cross_entropy_delta(A, Y, axis: int = 0):
    """delta^L = p sum_k y_k - y   (F1)

    The seed's derivation ends in ``p - y``, which needs sum_k y_k = 1; for soft
    or unnormalised labels the general form keeps the factor.
    """
    return A * jnp.sum(Y, axis=axis, keepdims=True) - Y  # (F1)


def sigmoid_binary_cross_entropy_delta(A, Y, axis: int = 0):
    """delta^L = (-y/a + (1-y)/(1-a)) a (1 - a) = a - y   (F2)"""
    del axis  # element-wise
    return A - Y  # (F2)


def linear_mse_delta(A, Y, axis: int = 0):
    """delta^L = (a - y) * 1 = a - y   (F3)"""
    del axis  # element-wise
    return A - Y  # (F3)


class Head(NamedTuple):
    """An output head: the last layer's activation with its loss, and what follows from the pair.

    ``fused`` is the closed form of delta^L for one example (None: BP1 through
    grad_a C and sigma', or the softmax Jacobian), ``tag`` its equation,
    ``task`` what the network does and ``metric`` what measures it.
    """

    activation: str
    loss: str
    fused: Callable[..., jax.Array] | None  # fused(A, Y, axis=0)
    tag: str | None
    task: str  # "classification" or "regression"
    metric: str  # "accuracy" or "r2"


# The one table of output heads; everything else reads it through ``head``.
HEADS = (
    Head(
        "softmax", "cross_entropy", softmax_cross_entropy_delta, "F1", "classification", "accuracy"
    ),
    Head(
        "sigmoid",
        "binary_cross_entropy",
        sigmoid_binary_cross_entropy_delta,
        "F2",
        "classification",
        "accuracy",
    ),
    Head("linear", "mse", linear_mse_delta, "F3", "regression", "r2"),
)


def head(activation: str, loss: str) -> Head:
    """The ``Head`` of an output activation and a loss; a pair outside ``HEADS`` (MSE
    after any other activation) has no closed form and is a regression."""
    for h in HEADS:
        if (h.activation, h.loss) == (activation, loss):
            return h
    return Head(activation, loss, None, None, "regression", "r2")


# dC/dy for one example (column), by loss name: (G-Y1)-(G-Y3).
TARGET_GRADS = {
    "mse": mse_target_grad,
    "binary_cross_entropy": binary_cross_entropy_target_grad,
    "cross_entropy": cross_entropy_target_grad,
}

LOSSES = {
    "mse": Loss("mse", mse, mse_stable, mse_grad, None),
    "binary_cross_entropy": Loss(
        "binary_cross_entropy",
        binary_cross_entropy,
        binary_cross_entropy_stable,
        binary_cross_entropy_grad,
        ("sigmoid",),
    ),
    "cross_entropy": Loss(
        "cross_entropy", cross_entropy, cross_entropy_stable, cross_entropy_grad, ("softmax",)
    ),
}


def get(name: str) -> Loss:
    """The loss called ``name``; a ValueError lists the valid names."""
    try:
        return LOSSES[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in LOSSES)
        raise ValueError(f"unknown loss {name!r}; valid names: {valid}") from None
