"""The output heads' second-order pieces: the Hessian of each example's cost in Z^[L].

For example x with pre-activation z = z^[L]_x, output a = sigma(z) and its own cost
c_x (not divided by m), H_out = d^2 c_x / dz^2 is, per (output activation, loss):

  softmax + cross-entropy:  H = (sum_k y_k) (diag(p) - p p^T)             (H1)
  sigmoid + binary CE:      H = diag(sigma(z) sigma(-z))                  (H2)
  MSE after any sigma:      H = J^T J + Res(a - y)                        (H3)

with J = da/dz (S1; diag(sigma') for an element-wise sigma) and Res the residual of
(SD-R): MSE's grad_a c = a - y (G1) times sigma''. The first two costs are convex in
z and their whole Hessian is the GGN's; for MSE the generalised Gauss-Newton matrix
keeps J^T J, the cost's Hessian in a (the identity, by the seed's 1/2) pulled back
through sigma, and leaves Res to the exact Hessian: the split that BackPACK makes,
where the output activation is a module before the loss (H4). For the linear output
Res = 0 and both splits are the same. The GGN's part Lambda has a factor S with
S S^T = Lambda per example (H5), and a Monte Carlo factor, the output error at
targets drawn from the model's own predictive distribution (H6).

Every quantity here is per example, for c_x; the mean cost's 1/m is applied once by
the caller: (R3) in ``hvp``, (GN2) in ``ggn_vp``, (D3) in the diagonals.
Derivations in ``docs/derivations.md``, "Curvature".
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnn import activations, losses
from jaxnn.backpropagation import output_error
from jaxnn.curvature.second_derivatives import (
    has_residual,
    residual_factors,
    residual_vp,
    vjp_columns,
)
from jaxnn.network import Cache, Network
from jaxnn.validation import check_int, check_key

__all__ = [
    "CONVEX_HEADS",
    "ConvexHead",
    "ggn_output_hessian_vp",
    "output_hessian",
    "output_hessian_factor",
    "output_hessian_vp",
    "output_residual_factors",
    "sampled_output_factor",
    "sampled_targets",
]


def _label_mass(Y: jax.Array) -> jax.Array:
    """sum_k y_k per column, ``(1, m)``: 1 for one-hot labels, the factor of (F1) and (H1)."""
    return jnp.sum(Y, axis=0, keepdims=True)


def _diagonal(d: jax.Array) -> jax.Array:
    """``(n, m)`` -> ``(n, n, m)``: diag(d[:, x]) for every column x."""
    return jnp.eye(d.shape[0], dtype=d.dtype)[:, :, None] * d[:, None, :]


def _softmax_ce_vp(Z, A, Y, V):
    p_v = jnp.sum(A * V, axis=0, keepdims=True)
    return _label_mass(Y) * (A * V - A * p_v)  # (H1)


def _softmax_ce_factor(Z, A, Y):
    root = jnp.sqrt(A)
    S = _diagonal(root) - A[:, None, :] * root[None, :, :]  # (H5): diag(sqrt p) - p sqrt(p)^T
    return jnp.sqrt(_label_mass(Y))[None] * S  # (H5): sqrt(sum_k y_k) of (H1)


def _sigmoid_bce_curvature(Z):
    return jax.nn.sigmoid(Z) * jax.nn.sigmoid(-Z)  # (H2), sigma' as in (A2)


def _sigmoid_bce_vp(Z, A, Y, V):
    return _sigmoid_bce_curvature(Z) * V  # (H2)


def _sigmoid_bce_factor(Z, A, Y):
    return _diagonal(jnp.sqrt(_sigmoid_bce_curvature(Z)))  # (H5)


class ConvexHead(NamedTuple):
    """A head whose cost is convex in z^[L]: H_out and its factor in closed form.

    ``hessian_vp(Z, A, Y, V)`` is H_out V per column, ``factor(Z, A, Y)`` is S,
    ``(n_L, n_L, m)``, and ``tag`` the equation of H_out.
    """

    hessian_vp: Callable[..., jax.Array]
    factor: Callable[..., jax.Array]
    tag: str


# The heads convex in z^[L], by (output activation, loss) as in jaxnn.losses.HEADS: their
# whole H_out is the GGN's. Every other head is MSE after some sigma, (H3).
CONVEX_HEADS = {
    ("softmax", "cross_entropy"): ConvexHead(_softmax_ce_vp, _softmax_ce_factor, "H1"),
    ("sigmoid", "binary_cross_entropy"): ConvexHead(_sigmoid_bce_vp, _sigmoid_bce_factor, "H2"),
}


def _convex(net: Network) -> ConvexHead | None:
    if net.loss is None:
        raise ValueError(
            f"this network has no loss (loss=None, sizes {net.sizes}), so it has no curvature; "
            f"give jaxnn.Network a loss, one of {tuple(losses.LOSSES)}"
        )
    return CONVEX_HEADS.get((net.activations[-1], net.loss))


def ggn_output_hessian_vp(
    Z_L: jax.Array, A_L: jax.Array, Y: jax.Array, net: Network, V: jax.Array
) -> jax.Array:
    """Lambda V per column, the GGN's output Hessian times ``V`` (all ``(n_L, m)``)   (H4)

    (H1) or (H2) for the convex heads; J^T J V for MSE (H3), two passes of (S2) or
    sigma' (J is symmetric, so J V = J^T V).
    """
    convex = _convex(net)
    if convex is not None:
        return convex.hessian_vp(Z_L, A_L, Y, V)  # (H1), (H2)
    act = activations.get(net.activations[-1])
    return act.vjp(Z_L, A_L, act.vjp(Z_L, A_L, V))  # (H3), (H4): J^T J V


def output_hessian_vp(
    Z_L: jax.Array, A_L: jax.Array, Y: jax.Array, net: Network, V: jax.Array
) -> jax.Array:
    """H_out V per column, the whole Hessian of each example's cost in z^[L]   (H1)-(H3)

    The GGN's part (H4) plus, for MSE, the residual Res(a - y) V (SD-R).
    """
    gauss_newton = ggn_output_hessian_vp(Z_L, A_L, Y, net, V)
    if _convex(net) is not None or not has_residual(net.activations[-1]):
        return gauss_newton
    grad_a = losses.mse_grad(A_L, Y)  # (G1)
    return gauss_newton + residual_vp(net.activations[-1], Z_L, A_L, grad_a, V)  # (H3)


def output_hessian_factor(Z_L: jax.Array, A_L: jax.Array, Y: jax.Array, net: Network) -> jax.Array:
    """S, ``(n_L, n_L, m)``, with S[:, :, x] S[:, :, x]^T = Lambda_x, the GGN's output
    Hessian of example x   (H5)

    softmax + CE: sqrt(sum_k y_k) (diag(sqrt p) - p sqrt(p)^T); sigmoid + BCE:
    diag(sqrt(sigma(z) sigma(-z))); MSE: J^T (diag(sigma'), or softmax's J). For the
    convex heads Lambda is all of H_out; for MSE after a non-linear sigma it is J^T J,
    and ``output_residual_factors`` gives the rest. Per example: the mean's 1/m is the
    caller's.
    """
    convex = _convex(net)
    if convex is not None:
        return convex.factor(Z_L, A_L, Y)  # (H5)
    eye = jnp.eye(Z_L.shape[0], dtype=Z_L.dtype)[:, :, None]
    columns = jnp.broadcast_to(eye, (*eye.shape[:2], Z_L.shape[1]))
    return vjp_columns(net.activations[-1], Z_L, A_L, columns)  # (H5): J^T, column by column


def output_residual_factors(
    Z_L: jax.Array, A_L: jax.Array, Y: jax.Array, net: Network
) -> tuple[jax.Array, jax.Array | None, jax.Array | None] | None:
    """H_out - S S^T = diag(d) + F diag(w) F^T per example, as ``(d, F, w)`` (see
    ``residual_factors``), or None where it is 0 (the convex heads, and MSE after a
    piecewise-linear sigma)   (H3), (SD-R)"""
    if _convex(net) is not None or not has_residual(net.activations[-1]):
        return None
    grad_a = losses.mse_grad(A_L, Y)  # (G1)
    return residual_factors(net.activations[-1], Z_L, A_L, grad_a)  # (H3)


def output_hessian(Z_L: jax.Array, A_L: jax.Array, Y: jax.Array, net: Network) -> jax.Array:
    """H_out per example, ``(n_L, n_L, m)``: d^2 c_x / dz^[L]_x^2 for example x's own cost
    c_x (the mean cost's Hessian in Z^[L] is this over m)   (H1)-(H3)

    Built as S S^T (H5) plus the residual of (H3), so it checks both.
    """
    S = output_hessian_factor(Z_L, A_L, Y, net)
    H = jnp.einsum("icm,jcm->ijm", S, S)  # (H5): S S^T
    residual = output_residual_factors(Z_L, A_L, Y, net)
    if residual is None:
        return H
    d, F, w = residual
    H = H + _diagonal(d)  # (H3)
    if F is not None:
        H = H + jnp.einsum("icm,cm,jcm->ijm", F, jnp.broadcast_to(w, F.shape[1:]), F)  # (SD-S2)
    return H


def sampled_targets(
    Z_L: jax.Array, A_L: jax.Array, net: Network, key: jax.Array, samples: int
) -> jax.Array:
    """Targets drawn from the model's predictive distribution, ``(n_L, samples, m)``   (H6)

    cross-entropy: one-hot labels k ~ Categorical(softmax(z)); binary cross-entropy:
    y_j ~ Bernoulli(a_j) for each unit; MSE: y ~ N(a, I), whose negative
    log-likelihood is (C1) with its 1/2, up to a constant.
    """
    _convex(net)
    n, m = A_L.shape
    if net.loss == "cross_entropy":
        labels = jax.random.categorical(key, Z_L, axis=0, shape=(samples, m))
        return jax.nn.one_hot(labels, n, dtype=A_L.dtype, axis=0)  # (H6)
    if net.loss == "binary_cross_entropy":
        return jax.random.bernoulli(key, A_L[:, None, :], (n, samples, m)).astype(A_L.dtype)
    return A_L[:, None, :] + jax.random.normal(key, (n, samples, m), A_L.dtype)  # (H6)


def sampled_output_factor(
    Z_L: jax.Array,
    A_L: jax.Array,
    net: Network,
    key: jax.Array,
    samples: int,
    *,
    Y: jax.Array | None = None,
) -> jax.Array:
    """The Monte Carlo factor S~, ``(n_L, samples, m)``, with E[S~ S~^T] = Lambda   (H6)

    Column s of example x is the output error dc_x/dz (F1-F3, or BP1) at a target
    y~_s drawn from the model (``sampled_targets``), over sqrt(samples): for these
    heads the expected outer product of the output error at the model's own targets
    is the GGN's output Hessian (H4), the Fisher. ``Y``, if given, scales the columns
    of softmax + CE by sqrt(sum_k y_k), so that the expectation is (H1)'s for targets
    that do not sum to 1; without it, the labels are taken to sum to 1 (BackPACK's
    DiagGGNMC and KFAC).
    """
    samples = check_int(samples, "samples")
    check_key(key, "sampled_output_factor")
    targets = sampled_targets(Z_L, A_L, net, key, samples)
    cache = Cache([Z_L], [A_L])  # the output layer alone is all output_error reads
    error = lambda y: output_error(cache, y, net)  # (F1)-(F3), (BP1)
    S = jax.vmap(error, in_axes=1, out_axes=1)(targets) / jnp.sqrt(samples)  # (H6)
    if Y is not None and (net.activations[-1], net.loss) == ("softmax", "cross_entropy"):
        S = S * jnp.sqrt(_label_mass(Y))[None]  # (H1)'s sum_k y_k
    return S
