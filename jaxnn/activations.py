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
gelu, gelu_tanh, silu and softplus are smooth: each sigma is ``jax.nn``'s function and
each sigma' is written in a form that neither overflows nor cancels at large |z|.

Warning:
  ``"gelu"`` is the exact GELU, z Phi(z): PyTorch's ``nn.GELU()`` default and
  ``jax.nn.gelu(x, approximate=False)``. ``jax.nn.gelu`` and Flax's ``nn.gelu`` default
  to the tanh approximation, which is ``"gelu_tanh"`` here (PyTorch's
  ``nn.GELU(approximate="tanh")``). The two differ by up to 4.7e-4 (at |z| = 2.7).
"""

import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

__all__ = [
    "ACTIVATIONS",
    "LEAKY_SLOPE",
    "Activation",
    "apply",
    "gelu",
    "gelu_deriv",
    "gelu_tanh",
    "gelu_tanh_deriv",
    "get",
    "leaky_relu",
    "leaky_relu_deriv",
    "linear",
    "linear_deriv",
    "relu",
    "relu_deriv",
    "sigmoid",
    "sigmoid_deriv",
    "silu",
    "silu_deriv",
    "softmax",
    "softmax_jacobian",
    "softmax_vjp",
    "softplus",
    "softplus_deriv",
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


# gelu_tanh's constants, as jax.nn.gelu(approximate=True) and PyTorch write them, and
# the normal density's.
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def gelu(Z):
    """gelu(z) = z Phi(z) = (z / 2) erfc(-z / sqrt 2), the exact GELU   (A12)

    Phi is the standard normal CDF. Computed by ``jax.nn.gelu(z, approximate=False)``,
    whose erfc(-z / sqrt 2), unlike 1 + erf(z / sqrt 2), keeps full relative precision
    where z << 0 (1 + erf cancels there).
    """
    return jax.nn.gelu(Z, approximate=False)


def gelu_deriv(Z):
    """gelu'(z) = Phi(z) + z phi(z), phi(z) = e^{-z^2/2} / sqrt(2 pi)   (A13)

    Both terms are computed without cancellation: Phi(z) = erfc(-z / sqrt 2) / 2, and
    for z << 0 the sum is phi(z) (Phi(z)/phi(z) + z) with Phi/phi ~ 1/|z|, so no two
    nearly equal numbers are subtracted. z^2 overflowing (float32, |z| > 1.8e19) makes
    phi 0, not nan.
    """
    Phi = 0.5 * jax.lax.erfc(-Z * math.sqrt(0.5))  # (A13)
    phi = jnp.exp(-0.5 * Z**2) * _INV_SQRT_2PI  # (A13)
    return Phi + Z * phi  # (A13)


def gelu_tanh(Z):
    """gelu_tanh(z) = (z / 2) (1 + tanh u), u = sqrt(2/pi) (z + 0.044715 z^3), as
    ``jax.nn.gelu(z, approximate=True)`` computes it   (A14)"""
    return jax.nn.gelu(Z, approximate=True)


def gelu_tanh_deriv(Z):
    """gelu_tanh'(z) = (1 + tanh u) / 2 + (z / 2) (1 - tanh^2 u) u',
    u' = sqrt(2/pi) (1 + 3 * 0.044715 z^2)   (A15)

    The exact derivative of (A14). With s = sigmoid(2u): (1 + tanh u) / 2 = s and
    1 - tanh^2 u = 4 s (1 - s), and 1 - s = sigmoid(-2u), so it is computed as
    s + 2 z s sigmoid(-2u) u': no 1 + tanh u = 1 - 1 where u << 0 (jax.grad of
    jax.nn.gelu gives 0 there) and no 1 - tanh^2 = 1 - 1 where |u| is large. Where
    s sigmoid(-2u) is 0 the second term is 0, also when u' overflows (float32,
    |z| > 5e19).
    """
    u = _SQRT_2_OVER_PI * (Z + _GELU_CUBIC * Z**3)  # (A14)
    du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * Z**2)  # (A15)
    s, s_minus = jax.nn.sigmoid(2 * u), jax.nn.sigmoid(-2 * u)  # (A15): s and 1 - s
    ss = s * s_minus
    return s + jnp.where(ss > 0, 2 * Z * ss * du, 0)  # (A15)


def silu(Z):
    """silu(z) = z sigmoid(z), as ``jax.nn.silu`` (also called swish)   (A16)"""
    return jax.nn.silu(Z)


def silu_deriv(Z):
    """silu'(z) = s + z s (1 - s) = s (1 + z sigmoid(-z)), s = sigmoid(z)   (A17)

    1 - s is computed as sigmoid(-z), never 1 - 1 = 0: at z = 40 the second term is
    40 e^-40, not 0, and at z = -800 both factors are finite (s = 0, 1 + z = -799).
    """
    s = jax.nn.sigmoid(Z)  # (A1)
    return s * (1 + Z * jax.nn.sigmoid(-Z))  # (A17)


def softplus(Z):
    """softplus(z) = log(1 + e^z) = max(z, 0) + log(1 + e^-|z|), as ``jax.nn.softplus``   (A18)

    Never overflows. PyTorch's ``nn.Softplus()`` (beta 1, threshold 20) returns z itself
    for z > 20, up to e^-20 = 2.1e-9 below the true value; jaxnn and jax.nn do not switch.
    """
    return jax.nn.softplus(Z)


def softplus_deriv(Z):
    """softplus'(z) = e^z / (1 + e^z) = sigmoid(z)   (A19)

    Computed as jax.nn.sigmoid, without overflow. PyTorch's threshold makes its
    derivative exactly 1 for z > 20, where sigmoid(z) = 1 - e^-z.
    """
    return jax.nn.sigmoid(Z)


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
    "gelu": _elementwise("gelu", gelu, gelu_deriv),
    "gelu_tanh": _elementwise("gelu_tanh", gelu_tanh, gelu_tanh_deriv),
    "silu": _elementwise("silu", silu, silu_deriv),
    "softplus": _elementwise("softplus", softplus, softplus_deriv),
}


def get(name: str) -> Activation:
    """The activation called ``name``; a ValueError lists the valid names."""
    try:
        return ACTIVATIONS[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in ACTIVATIONS)
        raise ValueError(f"unknown activation {name!r}; valid names: {valid}") from None
