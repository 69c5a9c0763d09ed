"""Activations: each sigma beside its hand-written derivative sigma'.

Every activation acts on a pre-activation ``Z`` of shape ``(n, m)``, one example
per column. Element-wise activations expose ``deriv(Z)``, the diagonal of the
Jacobian; softmax couples the rows of a column, so it exposes its full Jacobian
(S1) for tests and docs, and every activation exposes ``vjp(Z, A, G)``, the
chain rule through it for ``G = dC/dA``, which is what BP1 and BP2 need:
``dC/dZ = J G`` per column (S2), without materialising an ``m x n x n`` tensor.
Here J is the seed's, ``J_ij = da_j/dz_i`` (rows indexed by z), the transpose of
``jax.jacobian``'s layout, so ``J G`` is JAX's vector-Jacobian product; softmax's J
is symmetric, so either reading gives the same numbers.

At kinks the derivative follows ``jax.nn``'s convention: ``relu'(0) = 0`` and
``leaky_relu'(0) = 1`` (``jax.nn.leaky_relu`` is ``where(z >= 0, z, slope z)``).
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "ACTIVATIONS",
    "LEAKY_SLOPE",
    "Activation",
    "apply",
    "get",
    "leaky_relu",
    "leaky_relu_deriv",
    "linear",
    "linear_deriv",
    "relu",
    "relu_deriv",
    "sigmoid",
    "sigmoid_deriv",
    "softmax",
    "softmax_jacobian",
    "softmax_vjp",
    "tanh",
    "tanh_deriv",
]

LEAKY_SLOPE = 0.01


class Activation(NamedTuple):
    """sigma and its derivative. ``deriv`` is None where sigma is not element-wise."""

    name: str
    fn: Callable[[jax.Array], jax.Array]
    deriv: Callable[[jax.Array], jax.Array] | None
    vjp: Callable[..., jax.Array]  # vjp(Z, A, G, axis=0): J^T G with the units on ``axis``


def sigmoid(Z):
    """sigma(z) = 1 / (1 + e^-z)   (A1)"""
    return jax.nn.sigmoid(Z)


def sigmoid_deriv(Z):
    """sigma'(z) = e^-z / (1 + e^-z)^2 = sigma(z) sigma(-z)   (A2)

    The seed's form overflows for z < -355 (in float64, (1 + e^-z)^2 > 1.8e308);
    sigma(z) sigma(-z) is the same quantity with 1 - sigma(z) computed as
    sigma(-z), so it keeps full relative precision when the unit saturates (it is
    ~e^-|z|, never 1 - 1 = 0).
    """
    return jax.nn.sigmoid(Z) * jax.nn.sigmoid(-Z)


def tanh(Z):
    """tanh(z)   (A3)"""
    return jnp.tanh(Z)


def tanh_deriv(Z):
    """tanh'(z) = 1 - tanh(z)^2   (A4)"""
    return 1 - jnp.tanh(Z) ** 2


def relu(Z):
    """relu(z) = max(z, 0)   (A5)"""
    return jax.nn.relu(Z)


def relu_deriv(Z):
    """relu'(z) = 1 if z > 0 else 0, so relu'(0) = 0 as in jax.nn   (A6)"""
    return (Z > 0).astype(Z.dtype)


def leaky_relu(Z):
    """leaky_relu(z) = z if z >= 0 else 0.01 z   (A7)"""
    return jnp.where(Z >= 0, Z, LEAKY_SLOPE * Z)


def leaky_relu_deriv(Z):
    """leaky_relu'(z) = 1 if z >= 0 else 0.01, so leaky_relu'(0) = 1 as in jax.nn   (A8)"""
    return jnp.where(Z >= 0, 1.0, LEAKY_SLOPE).astype(Z.dtype)


def linear(Z):
    """linear(z) = z   (A9)"""
    return Z


def linear_deriv(Z):
    """linear'(z) = 1   (A10)"""
    return jnp.ones_like(Z)


def softmax(Z, axis: int = 0):
    """softmax(z)_i = e^{z_i} / sum_j e^{z_j}, per column   (A11)

    Computed as e^{z_i - max z} / sum_j e^{z_j - max z}, which is equal and never
    overflows. ``axis`` is the axis of units: 0 when examples are columns (the
    seeds' layout), 1 when they are rows (``jaxnn.rows``).
    """
    return jax.nn.softmax(Z, axis=axis)


def softmax_jacobian(z):
    """The softmax Jacobian of one example: J[i, j] = da_j / dz_i = a_j (delta_ij - a_i)   (S1)

    Args:
      z: a pre-activation vector of shape ``(n,)``.

    Returns:
      ``(n, n)`` matrix, rows indexed by i (the z), columns by j (the a). It is
      symmetric: a_j delta_ij - a_j a_i.

    The seed writes ``da_j/dz_i = sum_j a_j (delta_ij - a_i)``; that sum is an
    erratum (summed over j it is identically zero, since sum_j a_j = 1).
    """
    a = jax.nn.softmax(z)
    return jnp.diag(a) - jnp.outer(a, a)  # (S1)


def softmax_vjp(Z, A, G, axis: int = 0):
    """dC/dz_i = sum_j (da_j/dz_i) g_j = a_i (g_i - sum_j a_j g_j), per column   (S2)

    The product of the seed's Jacobian matrix (S1) with the vector dC/da, in
    O(n m) instead of O(n^2 m). ``Z`` is unused: A = softmax(Z) carries all of it.
    ``axis`` is the axis of units (1 for rows of examples).
    """
    del Z
    return A * (G - jnp.sum(A * G, axis=axis, keepdims=True))  # (S2)


def _elementwise(name, fn, deriv):
    def vjp(Z, A, G, axis: int = 0):
        del A, axis  # element-wise: the layout does not matter
        return G * deriv(Z)  # the (.) sigma'(z) of (BP1) and (BP2)

    return Activation(name, fn, deriv, vjp)


def apply(act: Activation, Z: jax.Array, axis: int = 0) -> jax.Array:
    """sigma(Z) with the units on ``axis``: 0 for examples in columns, 1 for examples in rows.

    Only softmax (``deriv`` None) couples the units of an example; an element-wise
    sigma ignores the layout.
    """
    return act.fn(Z, axis=axis) if act.deriv is None else act.fn(Z)


ACTIVATIONS = {
    "sigmoid": _elementwise("sigmoid", sigmoid, sigmoid_deriv),
    "tanh": _elementwise("tanh", tanh, tanh_deriv),
    "relu": _elementwise("relu", relu, relu_deriv),
    "leaky_relu": _elementwise("leaky_relu", leaky_relu, leaky_relu_deriv),
    "linear": _elementwise("linear", linear, linear_deriv),
    "softmax": Activation("softmax", softmax, None, softmax_vjp),
}


def get(name: str) -> Activation:
    """The activation called ``name``; a ValueError lists the valid names."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r}; valid names: {valid}") from None
