"""Kronecker factors of each layer's Gauss-Newton block: KFLR (exact) and KFAC (sampled).

The GGN of the mean cost is (1/m) sum_x J_x^T Lambda_x J_x, with J_x the Jacobian of
example x's output pre-activation z_x^[L] in the parameters and Lambda_x = S_x S_x^T
its output Hessian (H4), (H5): the whole Hessian of its cost in z_x^[L] for the convex
heads, J_sigma^T J_sigma for MSE (``jaxnn.curvature.heads``). Backpropagating the
factor's columns as BP2 backpropagates a delta (D1),

  B_x^[L] = S_x,   B_x^[l] = J_sigma^T (W^[l+1]^T B_x^[l+1])   (BP2 on every column)

makes J_x^T S_x layer by layer; since dz_x^[l]/db^[l] = I and dz_x^[l]/dvec W^[l] =
I (x) a_x^[l-1]^T (W flattened row by row), b^[l]'s block of the GGN is exactly
(1/m) sum_x B_x B_x^T and W^[l]'s is (1/m) sum_x (B_x B_x^T) (x) (a_x a_x^T).
Kronecker-factored curvature takes the means of the two factors apart (Martens and
Grosse, 2015; Botev, Ritter and Barber, 2017):

  G^[l] = (1/m) sum_x B_x^[l] B_x^[l]^T                      (n^[l] x n^[l])      (K1)
  A^[l] = (1/m) sum_x a_x^[l-1] a_x^[l-1]^T = (1/m) A^[l-1] A^[l-1]^T           (K2)
  W^[l]'s block ~ G^[l] (x) A^[l],   b^[l]'s block = G^[l]                      (K3)

(K3) is exact for the biases and, with m = 1, for the weights. KFLR takes S_x of (H5);
KFAC the Monte Carlo factor of (H6), output errors at labels drawn from the model,
whose outer product is Lambda_x in expectation (K4). Returned as BackPACK's KFLR and
KFAC return them for a ``torch.nn.Linear``: ``{"W": [G, A], "b": [G]}``, G first,
the 1/m in both. Derivations in ``docs/derivations.md``, "Curvature".
"""

import jax
from jax.typing import ArrayLike

from jaxnn.curvature.diagonals import propagate_factor
from jaxnn.curvature.heads import output_hessian_factor, sampled_output_factor
from jaxnn.network import Cache, Network, Params, check_inputs, forward_unchecked
from jaxnn.sharding import sum_over_examples
from jaxnn.validation import check_int, check_key

__all__ = [
    "factors_from",
    "kfac",
    "kflr",
]


def factors_from(
    params: Params, cache: Cache, S: jax.Array, net: Network
) -> list[dict[str, list[jax.Array]]]:
    """``[{"W": [G, A], "b": [G]}]`` per layer from the output factor ``S`` (n_L, c, m)   (K1)-(K3).

    ``S[:, :, x] S[:, :, x]^T`` is (an estimate of) example x's own output Hessian; the
    1/m of the mean cost is applied here, once per factor.
    """
    m = cache.A[0].shape[1]
    layers = []
    for layer, B, A_prev in zip(
        params, propagate_factor(params, cache, S, net), cache.A, strict=False
    ):
        n, c, _ = B.shape
        columns = B.reshape(n, c * m)  # every column of every example's B_x
        G = (sum_over_examples(columns, columns, 1) / m).astype(layer["W"].dtype)  # (K1)
        A = (sum_over_examples(A_prev, A_prev, 1) / m).astype(layer["W"].dtype)  # (K2)
        layers.append({"W": [G, A], "b": [G]})  # (K3)
    return layers


def kflr(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network
) -> list[dict[str, list[jax.Array]]]:
    """Kronecker factors of each layer's exact GGN block: BackPACK's KFLR   (K1)-(K3).

    For layer l (``params[l - 1]``), ``{"W": [G, A], "b": [G]}`` with

      G = (1/m) sum_x B_x B_x^T,  B_x the output Hessian's factor S_x of example x
          backpropagated by BP2 to z^[l] (the exact GGN block of b^[l])      (K1)
      A = (1/m) A^[l-1] A^[l-1]^T, the layer's input's second moment         (K2)

    and W^[l]'s GGN block ~ np.kron(G, A) for W flattened row by row (K3): exact for
    one example, the Kronecker-factored approximation for more.

    Args:
      params, X, Y, net: as ``jaxnn.backprop`` (Y one-hot or integer labels for
        softmax with cross-entropy).

    Returns:
      One dict per layer, ``G`` ``(n^[l], n^[l])`` and ``A`` ``(n^[l-1], n^[l-1])`` in
      the params' dtype; the same ``G`` array for W and b.

    Example:
      >>> G, A = kflr(params, X, labels, net)[0]["W"]  # W^[1]'s block ~ jnp.kron(G, A)
    """
    X, Y = check_inputs(params, X, net, Y)
    cache = forward_unchecked(params, X, net)
    S = output_hessian_factor(cache.Z[-1], cache.A[-1], Y, net)
    return factors_from(params, cache, S, net)


def kfac(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, key: jax.Array, samples: int = 1
) -> list[dict[str, list[jax.Array]]]:
    """Kronecker factors of each layer's GGN block from sampled labels: BackPACK's KFAC   (K4).

    As ``kflr``, with each example's exact output factor replaced by the Monte Carlo
    factor of ``samples`` labels drawn from the model's predictive distribution
    (``jaxnn.curvature.heads.sampled_output_factor``): its S S^T is the output
    Hessian in expectation (K4), so G is KFLR's G in expectation, and A is the same.
    The labels come from the model; Y is checked, and for softmax with cross-entropy
    its label mass sum_k y_k scales the factor as in (H1) (1 for one-hot labels).

    Args:
      params, X, Y, net: as ``kflr``.
      key: a ``jax.random`` key for the labels.
      samples: labels drawn per example (BackPACK's ``mc_samples``).

    Returns:
      As ``kflr``.
    """
    samples = check_int(samples, "samples")
    check_key(key, "kfac")
    X, Y = check_inputs(params, X, net, Y)
    cache = forward_unchecked(params, X, net)
    S = sampled_output_factor(cache.Z[-1], cache.A[-1], net, key, samples, Y=Y)  # (K4)
    return factors_from(params, cache, S, net)
