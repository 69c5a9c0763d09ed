"""Diagonals of the GGN and of the Hessian, by backpropagating factors through BP2.

Z^[l] is linear in W^[l] and b^[l], so the curvature of example x's cost in layer l's
parameters is its curvature M_x^[l] in z^[l] seen through z = W a + b: the diagonal
entries are (1/m for the mean cost)

  diag(W^[l])_jk = (1/m) sum_x (M_x^[l])_jj (a^[l-1]_kx)^2,
  diag(b^[l])_j = (1/m) sum_x (M_x^[l])_jj                                  (D3)

and only the diagonals of the M_x^[l] are needed, never the matrices. For the GGN,
M_x^[l] = B_x^[l] B_x^[l]^T with

  B^[L] = S (H5),   B^[l] = J^[l]^T W^[l+1]^T B^[l+1]                        (D1)

BP2 applied to each of S's c columns at once ((n, c, m) tensors, one batched
product per layer), and (M^[l])_jj = sum_c (B^[l]_jc)^2 (D2). With S~ of (H6)
instead of S it is the Monte Carlo estimate. For the Hessian, the curvature in
z^[l] gains the residual of sigma'' at every layer (SD-R):

  M^[l] = J^T W^T M^[l+1] W J + Res^[l](g^[l]),  g^[l] = W^[l+1]^T e^[l+1]   (D4)

(e the per-example errors of BP1-BP2), from M^[L] = H_out (H1)-(H3). Each Res is
diag(d) + F diag(w) F^T (SD-S2), so M^[l] stays a sum of signed factor terms, each
backpropagated by (D1) as S is; a diagonal term one layer down has the diagonal
sigma'^2 (.) (W^2)^T d (D5), formed without its factor where nothing lies below.
Derivations in ``docs/derivations.md``, "Curvature".
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxnn import activations
from jaxnn.backpropagation import output_error, propagate, transpose_times
from jaxnn.curvature.heads import (
    output_hessian_factor,
    output_residual_factors,
    sampled_output_factor,
)
from jaxnn.curvature.second_derivatives import has_residual, residual_factors, vjp_columns
from jaxnn.network import Cache, Network, Params, bias_like, check_inputs, forward_unchecked
from jaxnn.sharding import sum_over_examples
from jaxnn.validation import check_int, check_key

__all__ = [
    "diag_ggn",
    "diag_ggn_mc",
    "diag_hessian",
    "diagonal_params",
    "factor_down",
    "propagate_factor",
]


def factor_down(W: jax.Array, F: jax.Array, name: str, Z: jax.Array, A: jax.Array) -> jax.Array:
    """One layer of (D1): J^T W^T F for a factor ``F`` ``(n^[l+1], c, m)``; ``W`` is
    W^[l+1], ``name``, ``Z``, ``A`` layer l's activation, Z^[l] and A^[l].

    W^T is applied to all c m columns as one ``(n^[l+1], c m)`` product (BP2's
    ``transpose_times``), then J^T to every column (``vjp_columns``).
    """
    n, c, m = F.shape
    W_T_F = transpose_times(W, F.reshape(n, c * m)).reshape(-1, c, m)  # (D1): W^T F
    return vjp_columns(name, Z, A, W_T_F)  # (D1): J^T, per column


def propagate_factor(params: Params, cache: Cache, S: jax.Array, net: Network) -> list[jax.Array]:
    """B^[l] for every layer, ``[B^[1], ..., B^[L]]``, each ``(n^[l], c, m)``, from
    B^[L] = S   (D1)

    B_x^[l] B_x^[l]^T is example x's GGN in z^[l] (of the factor's output Hessian:
    S of (H5), or S~ of (H6)). Indexed as ``params``: entry l is layer l + 1's.
    """
    factors = [None] * net.L
    B = S
    for l in reversed(range(net.L)):  # params[l] is layer l + 1 of the math
        factors[l] = B
        if l > 0:
            B = factor_down(params[l]["W"], B, net.activations[l - 1], cache.Z[l - 1], cache.A[l])
    return factors


def diagonal_params(params: Params, cache: Cache, diagonals: list[jax.Array]) -> Params:
    """The params' diagonals from every layer's diag(M_x^[l]), ``(n^[l], m)``, per example
    (D3): W's is (1/m) sum_x d_x (a_x^2)^T, b's (1/m) sum_x d_x; in the params'
    structure, shapes and dtypes."""
    m = cache.A[0].shape[1]
    result = [
        {
            "W": (sum_over_examples(d, A_prev**2, 1) / m).astype(layer["W"].dtype),  # (D3)
            "b": bias_like(jnp.sum(d, axis=1) / m, layer["b"]),  # (D3)
        }
        for layer, d, A_prev in zip(params, diagonals, cache.A, strict=False)
    ]
    return tuple(result) if isinstance(params, tuple) else result


def _diag_from_factor(params: Params, cache: Cache, S: jax.Array, net: Network) -> Params:
    factors = propagate_factor(params, cache, S, net)  # (D1)
    return diagonal_params(params, cache, [jnp.sum(B**2, axis=1) for B in factors])  # (D2)


def diag_ggn(params: Params, X: ArrayLike, Y: ArrayLike, net: Network) -> Params:
    """The exact diagonal of the GGN of ``jaxnn.cost``   (D1)-(D3)

    S of (H5), ``(n_L, n_L, m)``, is backpropagated through BP2 as n_L columns at once,
    then squared and summed into BP3's and BP4's shapes: n_L backward passes of
    matrices, not n_L backprops of the network. BackPACK's ``DiagGGNExact`` for the
    same network, data and ``CrossEntropyLoss()``.

    Args:
      params, X, Y, net: as ``jaxnn.backprop``.

    Returns:
      diag(G) in the params' structure, shapes and dtypes.
    """
    X, Y = check_inputs(params, X, net, Y)
    cache = forward_unchecked(params, X, net)
    S = output_hessian_factor(cache.Z[-1], cache.A[-1], Y, net)  # (H5)
    return _diag_from_factor(params, cache, S, net)


def diag_ggn_mc(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, key: jax.Array, samples: int = 1
) -> Params:
    """A Monte Carlo estimate of ``diag_ggn``: (D1)-(D3) with the factor S~ of (H6)

    S~ holds the output errors at ``samples`` targets drawn from the model per example
    (labels from softmax(z) for cross-entropy), so E[result] = ``diag_ggn``'s (for
    cross-entropy: exactly, whatever the labels sum to). BackPACK's ``DiagGGNMC``.

    Args:
      params, X, Y, net: as ``jaxnn.backprop``.
      key: a ``jax.random`` key.
      samples: targets drawn per example (static under ``jax.jit``).
    """
    check_key(key, "diag_ggn_mc")
    samples = check_int(samples, "samples")
    X, Y = check_inputs(params, X, net, Y)
    cache = forward_unchecked(params, X, net)
    S = sampled_output_factor(cache.Z[-1], cache.A[-1], net, key, samples, Y=Y)  # (H6)
    return _diag_from_factor(params, cache, S, net)


def _signed_squares(F: jax.Array, w: jax.Array | None) -> jax.Array:
    """diag(F diag(w) F^T) per example: sum_c w_c F_jc^2, ``(n, m)``   (D2)"""
    return jnp.sum(F**2, axis=1) if w is None else jnp.sum(F**2 * w[None], axis=1)  # (D2)


def diag_hessian(params: Params, X: ArrayLike, Y: ArrayLike, net: Network) -> Params:
    """The exact diagonal of the Hessian of ``jaxnn.cost``   (D1)-(D5)

    The GGN's factor backpropagated as in ``diag_ggn``, plus the residual terms of
    sigma'' (SD-R) at every hidden layer and at an MSE output, each written as signed
    factors (SD-S2) and backpropagated the same way (D4). BackPACK's ``DiagHessian``.
    A term from l layers up is an ``(n^[l'], n^[l'+l], m)`` tensor, as in BackPACK:
    memory grows with the widths and depth, not with the number of parameters squared.

    Args:
      params, X, Y, net: as ``jaxnn.backprop``.

    Returns:
      diag(H) in the params' structure, shapes and dtypes.
    """
    X, Y = check_inputs(params, X, net, Y)
    cache = forward_unchecked(params, X, net)
    errors, _ = propagate(params, cache, output_error(cache, Y, net), net)  # e^[l], per example
    Z_L, A_L = cache.Z[-1], cache.A[-1]
    dense = [(output_hessian_factor(Z_L, A_L, Y, net), None)]  # (H5): M^[L] = S S^T + ...
    diagonal = None  # the sum of the diag(d) terms of M^[l], (n^[l], m), or None
    residual = output_residual_factors(Z_L, A_L, Y, net)  # (H3)
    if residual is not None:
        diagonal, F, w = residual
        dense += [(F, w)] if F is not None else []
    diagonals = [None] * net.L
    for l in reversed(range(net.L)):  # params[l] is layer l + 1 of the math
        d = sum(_signed_squares(F, w) for F, w in dense)  # (D2)
        diagonals[l] = d if diagonal is None else d + diagonal
        if l == 0:
            break
        name, W = net.activations[l - 1], params[l]["W"]
        Z, A = cache.Z[l - 1], cache.A[l]
        dense = [(factor_down(W, F, name, Z, A), w) for F, w in dense]  # (D1), (D4)
        below = None  # a diagonal term of layer l brought down, where only its diagonal is needed
        if diagonal is not None:
            if l == 1 and activations.get(name).deriv is not None:
                sigma_prime = activations.get(name).deriv(Z)
                below = sigma_prime**2 * transpose_times(W**2, diagonal)  # (D5)
            else:  # its factor J^T W^T, the same W^T for every example, then J^T per example
                W_T = jnp.broadcast_to(W.T[:, :, None], (*W.T.shape, Z.shape[1]))
                dense.append((vjp_columns(name, Z, A, W_T), diagonal))  # (D1), (D4)
        diagonal = below  # layer 0 is the last: a term brought down by (D5) goes no further
        if has_residual(name):
            g = transpose_times(W, errors[l])  # g^[l] = dc/da^[l] = W^T e^[l+1], BP2's product
            d, F, w = residual_factors(name, Z, A, g)  # (D4): Res^[l](g^[l])
            diagonal = d if diagonal is None else diagonal + d
            dense += [(F, w)] if F is not None else []
    return diagonal_params(params, cache, diagonals)
