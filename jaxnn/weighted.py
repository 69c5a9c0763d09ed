"""A weighted mean cost and its gradient, by hand: partial batches and padding.

With a weight w_x >= 0 on each of the m columns and s = sum_x w_x > 0,

  C_w = (1/s) sum_x w_x C_x                                          (C-W)
  delta^[L] column x = (w_x / s) dC_x/dz^[L]                          (BP1-W)

BP2-BP4 are linear in delta^[L], so they carry the weights down unchanged: the
gradient is ``jaxnn.backpropagation.backward_from`` of that delta. With every
w_x = 1, s = m and (C-W), (BP1-W) are (C-M), (BP1). A weight of 0 removes a column
exactly (its cost and its delta are multiplied by 0), so a batch of fixed shape
holds a last, partial batch or a padded set: one compiled program for every size.
The weight decay of (C-L2), (BP4-L2) divides by s, the real examples, as
scikit-learn divides its ``alpha`` term by the batch's size (or its weights' sum).

``jaxnn verify``'s weighted line and tests/test_weighted.py check both equations
against ``jax.grad`` of ``weighted_cost``.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxnn import losses
from jaxnn.backpropagation import backward_from, output_error
from jaxnn.network import Network, Params, check_inputs, forward_unchecked
from jaxnn.regularization import l2_grads, l2_penalty

__all__ = ["check_weights", "value_and_backprop_weighted", "weighted_cost"]


def check_weights(weights: ArrayLike, m: int) -> jax.Array:
    """``weights`` as an ``(m,)`` array, or a ValueError naming its shape."""
    w = jnp.asarray(weights)
    if w.shape != (m,):
        raise ValueError(f"weights has shape {w.shape}; expected ({m},), one per example (column)")
    return w


def _per_example(params: Params, X: jax.Array, Y: jax.Array, net: Network):
    cache = forward_unchecked(params, X, net)
    per_example = losses.get(net.loss).stable_value(cache.Z[-1], cache.A[-1], Y)  # C_x
    return cache, per_example


def weighted_cost(
    params: Params,
    X: ArrayLike,
    Y: ArrayLike,
    weights: ArrayLike,
    net: Network,
    weight_decay: float | jax.Array = 0.0,
) -> jax.Array:
    """C_w = (1/s) sum_x w_x C_x (C-W), plus lambda / (2 s) sum_l ||W^[l]||^2 (C-L2) with
    s = sum_x w_x; the reference of ``value_and_backprop_weighted`` for ``jax.grad``."""
    X, Y = check_inputs(params, X, net, Y)
    w = check_weights(weights, X.shape[1])
    _, per_example = _per_example(params, X, Y, net)
    s = jnp.sum(w)
    return jnp.sum(w * per_example) / s + l2_penalty(params, s, weight_decay)  # (C-W), (C-L2)


def value_and_backprop_weighted(
    params: Params,
    X: ArrayLike,
    Y: ArrayLike,
    weights: ArrayLike,
    net: Network,
    weight_decay: float | jax.Array = 0.0,
) -> tuple[jax.Array, Params]:
    """``(C_w, grads)`` by hand from one forward pass: (C-W) and (C-L2), then (BP1-W),
    BP2-BP4 and (BP4-L2).

    Args:
      params, X, Y, net: as ``jaxnn.value_and_backprop``.
      weights: ``(m,)``, w_x >= 0 per example (column), with a positive sum.
      weight_decay: lambda of (C-L2), divided by s = sum_x w_x; may be traced.
    """
    X, Y = check_inputs(params, X, net, Y)
    w = check_weights(weights, X.shape[1])
    cache, per_example = _per_example(params, X, Y, net)
    s = jnp.sum(w)
    c = jnp.sum(w * per_example) / s + l2_penalty(params, s, weight_decay)  # (C-W), (C-L2)
    delta = output_error(cache, Y, net) * (w / s)[None, :]  # (BP1-W)
    grads = backward_from(params, cache, delta, net).grads  # BP2-BP4
    return c, l2_grads(grads, params, s, weight_decay)  # (BP4-L2)
