"""The first two moments of the examples' gradients, from one forward pass and BP1-BP2.

BackPACK's SumGradSquared and Variance (Dangel, Kunstner and Hennig, 2020), by hand.
For the mean cost C = (1/m) sum_x C_x, BackPACK's "individual gradient" of example x
is its term of the mean, g_x / m with g_x = dC_x/dtheta (PE-G): the same thing as
column x of the mean's delta^[l] (which carries the 1/m of (BP1)) times a_x^T. An
outer product squared entry by entry is the outer product of the squares,
(delta_x a_x^T)^(.2) = delta_x^(.2) (a_x^(.2))^T, so the sum over the examples is one
product of squared matrices, and no example's gradient is ever formed:

  SGS(W^[l]) = sum_x (delta_x a_x^T)^(.2) = (delta^[l] (.) delta^[l]) (A^[l-1] (.) A^[l-1])^T   (M1)
  SGS(b^[l]) = sum_x (delta_x)^(.2)        = row sums of delta^[l] (.) delta^[l]               (M2)
  Var        = (1/m) SGS - ((1/m) dC/dtheta)^(.2)                                              (M3)

(M3) is BackPACK's variance: the (biased, 1/m) variance over the examples of the
scaled gradients g_x / m, that is (1/m^3) sum_x (g_x - mean_x g_x)^(.2), with
dC/dtheta from BP3 and BP4. Derivations in ``docs/derivations.md``, "Curvature".
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxnn.backpropagation import output_delta, propagate
from jaxnn.network import Cache, Network, Params, bias_like, check_inputs, forward_unchecked
from jaxnn.sharding import sum_over_examples

__all__ = [
    "sum_grad_squared",
    "variance",
]


def _deltas(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network
) -> tuple[Cache, list[jax.Array]]:
    """``(cache, deltas)``: the forward cache and every layer's delta^[l] of the mean cost."""
    X, Y = check_inputs(params, X, net, Y)
    cache = forward_unchecked(params, X, net)
    deltas, _ = propagate(params, cache, output_delta(cache, Y, net), net)  # (BP1), (BP2)
    return cache, deltas


def _in_params_shape(params: Params, leaves: list[dict[str, jax.Array]]) -> Params:
    """Each ``{"W", "b"}`` in the params' shapes, dtypes and container."""
    out = [
        {"W": q["W"].astype(layer["W"].dtype), "b": bias_like(q["b"], layer["b"])}
        for layer, q in zip(params, leaves, strict=True)
    ]
    return tuple(out) if isinstance(params, tuple) else out


def _squared_sums(cache: Cache, deltas: list[jax.Array]) -> list[dict[str, jax.Array]]:
    """(M1) and (M2) for every layer, in the math's shapes."""
    return [
        {
            "W": sum_over_examples(delta * delta, A_prev * A_prev, 1),  # (M1)
            "b": jnp.sum(delta * delta, axis=1),  # (M2)
        }
        for delta, A_prev in zip(deltas, cache.A, strict=False)
    ]


def sum_grad_squared(params: Params, X: ArrayLike, Y: ArrayLike, net: Network) -> Params:
    """sum_x (g_x / m)^2, entry by entry: BackPACK's SumGradSquared of the mean cost   (M1), (M2).

    With g_x = dC_x/dtheta example x's own gradient and C = (1/m) sum_x C_x, each
    example's term of the mean gradient is delta_x a_x^T (BP4 for one column), and

      [W^[l]]: (delta^[l] (.) delta^[l]) (A^[l-1] (.) A^[l-1])^T     (M1)
      [b^[l]]: sum over columns of delta^[l] (.) delta^[l]          (M2)

    from one forward pass and BP1-BP2; no per-example gradient is formed.

    Args:
      params, X, Y, net: as ``jaxnn.backprop`` (X ``(n_x, m)``; Y ``(n_L, m)``, or
        integer labels ``(m,)`` for softmax with cross-entropy).

    Returns:
      The params' structure, shapes and dtypes. Times m^2, it is the sum of the
      squared per-example gradients, sum_x g_x^2.

    Example:
      >>> sgs = sum_grad_squared(params, X, labels, net)  # sgs[0]["W"]: W^[1]'s shape
    """
    cache, deltas = _deltas(params, X, Y, net)
    return _in_params_shape(params, _squared_sums(cache, deltas))


def variance(params: Params, X: ArrayLike, Y: ArrayLike, net: Network) -> Params:
    """The variance over the examples of g_x / m, entry by entry: BackPACK's Variance   (M3).

      Var = (1/m) sum_x (g_x / m)^2 - ((1/m) sum_x g_x / m)^2
          = (1/m) SGS - ((1/m) dC/dtheta)^2                         (M3)

    with SGS from (M1), (M2) and dC/dtheta from BP3, BP4, over the same deltas. It is
    the biased (1/m) variance of the scaled gradients, (1/m^3) sum_x (g_x - g)^2 with g
    the mean gradient; multiply by m^2 for the variance of the g_x themselves.

    Warning:
      A difference of two moments: where the variance is tiny beside the squared
      mean, float32 loses its digits to cancellation (as BackPACK's does).

    Args:
      params, X, Y, net: as ``jaxnn.backprop``.

    Returns:
      The params' structure, shapes and dtypes.
    """
    cache, deltas = _deltas(params, X, Y, net)
    m = cache.A[0].shape[1]
    moments = []
    for squares, delta, A_prev in zip(_squared_sums(cache, deltas), deltas, cache.A, strict=False):
        mean_W = sum_over_examples(delta, A_prev, 1) / m  # (BP4), over m
        mean_b = jnp.sum(delta, axis=1) / m  # (BP3), over m
        moments.append(
            {
                "W": squares["W"] / m - mean_W * mean_W,  # (M3)
                "b": squares["b"] / m - mean_b * mean_b,  # (M3)
            }
        )
    return _in_params_shape(params, moments)
