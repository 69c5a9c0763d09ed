"""Second derivatives of the activations: each sigma'' beside the sigma' it differentiates.

The Hessian of the cost needs, at every layer, what BP2 leaves out: how sigma'
changes. With g = dc/da^[l] for one example (``G``, one column per example), the
part of the Hessian in z^[l] that sigma'' contributes is the residual

  Res(g) = sum_k g_k d^2 a_k / dz^2                                     (SD-R)

which for an element-wise sigma is diag(sigma''(z) (.) g), with sigma'' from the
one table ``SECOND_DERIVATIVES`` (SD1-SD9), and for softmax, whose a_k depends on
the whole column, is (SD-S1)

  Res(g) = diag(e) - p e^T - e p^T,   p = softmax(z),  e = J g (S2).

``residual_vp`` is Res(g) v, what the Hessian-vector product needs (R4);
``residual_factors`` writes Res(g) as diag(d) + F diag(w) F^T (SD-S2), what the
exact Hessian diagonal backpropagates. Kinks: relu'' = leaky_relu'' = 0, the
second derivative everywhere but at 0, as BackPACK takes it. Derivations in
``docs/derivations.md``, "Curvature".
"""

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp

from jaxnn import activations

__all__ = [
    "SECOND_DERIVATIVES",
    "gelu_second",
    "gelu_tanh_second",
    "has_residual",
    "residual_factors",
    "residual_vp",
    "second_derivative",
    "sigmoid_second",
    "silu_second",
    "softplus_second",
    "tanh_second",
    "vjp_columns",
    "zero_second",
]


def sigmoid_second(Z: jax.Array) -> jax.Array:
    """sigma''(z) = sigma'(z) (1 - 2 sigma(z)) = sigma(z) sigma(-z) (sigma(-z) - sigma(z))   (SD1)

    1 - 2 sigma(z) is written sigma(-z) - sigma(z), and sigma' as in (A2), so it keeps its
    relative precision where the unit saturates.
    """
    s, s_minus = jax.nn.sigmoid(Z), jax.nn.sigmoid(-Z)
    return s * s_minus * (s_minus - s)  # (SD1)


def tanh_second(Z: jax.Array) -> jax.Array:
    """tanh''(z) = -2 tanh(z) (1 - tanh(z)^2)   (SD2)"""
    t = jnp.tanh(Z)
    return -2 * t * (1 - t**2)  # (SD2)


def zero_second(Z: jax.Array) -> jax.Array:
    """relu''(z) = leaky_relu''(z) = linear''(z) = 0   (SD3), (SD4), (SD5)

    Piecewise linear: 0 away from the kink, and at it by convention (as BackPACK). One
    function for the three, so that ``has_residual`` can tell them by it and the
    R-pass and the Hessian diagonal leave their residual out altogether.
    """
    return jnp.zeros_like(Z)  # (SD3), (SD4), (SD5)


_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_GELU_CUBIC = 0.044715  # (A14)'s constant


def gelu_second(Z: jax.Array) -> jax.Array:
    """gelu''(z) = d/dz [Phi(z) + z phi(z)] = phi + phi - z^2 phi = phi(z) (2 - z^2)   (SD6)

    With phi' = -z phi. phi underflows to 0 for |z| > 38, and the product stays 0.
    """
    phi = jnp.exp(-0.5 * Z**2) * _INV_SQRT_2PI
    return phi * (2 - Z**2)  # (SD6)


def gelu_tanh_second(Z: jax.Array) -> jax.Array:
    """gelu_tanh''(z) = 2 s s- [2 u' + z u'' + 2 z u'^2 (s- - s)]   (SD7)

    gelu_tanh(z) = z s with s = sigmoid(2u), s- = sigmoid(-2u) = 1 - s, u as in (A14):
    (A15) is s + 2 z u' s s-, and d/dz (s s-) = 2 u' s s- (s- - s) by (SD1), so the
    product rule gives the above, with u'' = 6 sqrt(2/pi) 0.044715 z. Where s s- is 0
    (|z| large) it is 0, even where u'^2 overflows.
    """
    u = _SQRT_2_OVER_PI * (Z + _GELU_CUBIC * Z**3)  # (A14)
    du = _SQRT_2_OVER_PI * (1 + 3 * _GELU_CUBIC * Z**2)  # (A15)
    ddu = _SQRT_2_OVER_PI * 6 * _GELU_CUBIC * Z  # (SD7)
    s, s_minus = jax.nn.sigmoid(2 * u), jax.nn.sigmoid(-2 * u)
    ss = s * s_minus
    inner = 2 * du + Z * ddu + 2 * Z * du**2 * (s_minus - s)  # (SD7)
    return 2 * ss * jnp.where(ss > 0, inner, 0)  # (SD7)


def silu_second(Z: jax.Array) -> jax.Array:
    """silu''(z) = 2 s s- + z s s- (s- - s) = s s- (2 + z (s- - s)),
    s = sigmoid(z), s- = sigmoid(-z)   (SD8)

    From (A17), s + z s s-, and (s s-)' = s s- (s- - s) (SD1).
    """
    s, s_minus = jax.nn.sigmoid(Z), jax.nn.sigmoid(-Z)
    return s * s_minus * (2 + Z * (s_minus - s))  # (SD8)


def softplus_second(Z: jax.Array) -> jax.Array:
    """softplus''(z) = sigmoid'(z) = sigma(z) sigma(-z)   (SD9), by (A19) and (A2)"""
    return jax.nn.sigmoid(Z) * jax.nn.sigmoid(-Z)  # (SD9)


# The one table of sigma'', by the activation's name: every element-wise activation of
# jaxnn.activations.ACTIVATIONS has its entry (tests/test_curvature.py checks it).
SECOND_DERIVATIVES: dict[str, Callable[[jax.Array], jax.Array]] = {
    "sigmoid": sigmoid_second,
    "tanh": tanh_second,
    "relu": zero_second,
    "leaky_relu": zero_second,
    "linear": zero_second,
    "gelu": gelu_second,
    "gelu_tanh": gelu_tanh_second,
    "silu": silu_second,
    "softplus": softplus_second,
}


def second_derivative(name: str) -> Callable[[jax.Array], jax.Array]:
    """sigma'' of the element-wise activation ``name``; a ValueError names those that have one."""
    try:
        return SECOND_DERIVATIVES[name]
    except (KeyError, TypeError):
        valid = ", ".join(repr(k) for k in SECOND_DERIVATIVES)
        raise ValueError(
            f"no second derivative for activation {name!r}; element-wise activations with "
            f"one: {valid} (softmax's residual is written apart: residual_vp)"
        ) from None


def has_residual(name: str) -> bool:
    """Whether the activation ``name`` has a residual (SD-R) at all: softmax and every
    activation whose sigma'' is not ``zero_second`` (relu, leaky_relu and linear have none)."""
    return name == "softmax" or second_derivative(name) is not zero_second


def residual_vp(name: str, Z: jax.Array, A: jax.Array, G: jax.Array, V: jax.Array) -> jax.Array:
    """Res(g) v per column: sum_k g_k (d^2 a_k / dz^2) v   (SD-R), (SD-S1)

    Args:
      name: the activation's name.
      Z, A: the layer's pre-activation and activation, ``(n, m)``.
      G: dc/da per column, ``(n, m)``.
      V: the direction, ``(n, m)``.

    Element-wise: sigma''(z) (.) g (.) v. Softmax: e (.) v - p (e . v) - e (p . v),
    with e = J g (S2) and the dot products per column.
    """
    if name == "softmax":
        e = activations.softmax_vjp(Z, A, G)  # (S2)
        e_v = jnp.sum(e * V, axis=0, keepdims=True)
        p_v = jnp.sum(A * V, axis=0, keepdims=True)
        return e * V - A * e_v - e * p_v  # (SD-S1)
    return second_derivative(name)(Z) * G * V  # (SD-R)


def residual_factors(
    name: str, Z: jax.Array, A: jax.Array, G: jax.Array
) -> tuple[jax.Array, jax.Array | None, jax.Array | None]:
    """Res(g) = diag(d) + F diag(w) F^T per column, as ``(d, F, w)``   (SD-R), (SD-S2)

    ``d`` is ``(n, m)``. Element-wise: d = sigma''(z) (.) g and no F (None, None).
    Softmax: d = e = J g and F = [p + e, p - e], ``(n, 2, m)``, with w = (-1/2, 1/2)
    (``(2, 1)``, the same for every column): -p e^T - e p^T = -(p+e)(p+e)^T/2 +
    (p-e)(p-e)^T/2.
    """
    if name == "softmax":
        e = activations.softmax_vjp(Z, A, G)  # (S2)
        F = jnp.stack([A + e, A - e], axis=1)  # (SD-S2)
        w = jnp.asarray([[-0.5], [0.5]], dtype=F.dtype)  # (SD-S2)
        return e, F, w
    return second_derivative(name)(Z) * G, None, None  # (SD-R)


def vjp_columns(name: str, Z: jax.Array, A: jax.Array, F: jax.Array) -> jax.Array:
    """J^T applied to every column of a factor: ``F`` is ``(n, c, m)``, slice ``F[:, i, :]``
    one ``(n, m)`` matrix with one vector per example, as BP2's ``(.) sigma'`` (or (S2))
    takes it. Element-wise: F (.) sigma'(z); softmax: (S2) per slice."""
    act = activations.get(name)
    return jax.vmap(lambda u: act.vjp(Z, A, u), in_axes=1, out_axes=1)(F)  # (BP2) per column
