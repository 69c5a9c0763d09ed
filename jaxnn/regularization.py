"""L2 weight decay, scikit-learn's ``alpha`` convention, by hand.

With lambda the weight decay and m the number of examples the cost is a mean
over (a batch's B in training), the penalised cost and its gradient are

  C_lambda = C + lambda / (2 m) sum_l ||W^[l]||_F^2        (C-L2)
  dC_lambda/dW^[l] = dC/dW^[l] + (lambda / m) W^[l]        (BP4-L2)
  dC_lambda/db^[l] = dC/db^[l]                             (BP3: biases are not decayed)

so the hand gradient is BP1-BP4's plus one term per weight matrix. This is
scikit-learn's MLP convention (``alpha``, divided by the batch's size), not
optax's decoupled ``add_decayed_weights``. ``jaxnn verify`` and the tests check
(BP4-L2) against ``jax.grad`` of ``penalised_cost``.
"""

import jax
import jax.numpy as jnp
from jax.typing import ArrayLike

from jaxnn.backpropagation import value_and_backprop
from jaxnn.network import Network, Params, cost

__all__ = ["l2_grads", "l2_penalty", "penalised_cost", "value_and_backprop_l2"]


def l2_penalty(params: Params, m: int | jax.Array, weight_decay: float) -> jax.Array:
    """lambda / (2 m) sum_l ||W^[l]||_F^2, the penalty of (C-L2); biases are not decayed."""
    squares = sum(jnp.sum(layer["W"] ** 2) for layer in params)
    return weight_decay / (2 * m) * squares  # (C-L2)


def l2_grads(grads: Params, params: Params, m: int | jax.Array, weight_decay: float) -> Params:
    """``grads`` with (lambda / m) W^[l] added to each dC/dW^[l] (BP4-L2); db unchanged."""
    return [
        {"W": g["W"] + (weight_decay / m) * layer["W"], "b": g["b"]}  # (BP4-L2), (BP3)
        for g, layer in zip(grads, params, strict=True)
    ]


def penalised_cost(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, weight_decay: float
) -> jax.Array:
    """C + lambda / (2 m) sum_l ||W^[l]||_F^2 (C-L2), m the examples (columns of X);
    for ``jax.grad``, the reference of ``value_and_backprop_l2``."""
    m = jnp.shape(X)[-1] if jnp.ndim(X) > 1 else 1
    return cost(params, X, Y, net) + l2_penalty(params, m, weight_decay)


def value_and_backprop_l2(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, weight_decay: float
) -> tuple[jax.Array, Params]:
    """``(C_lambda, grads)`` by hand: ``value_and_backprop`` (BP1-BP4) plus the penalty
    (C-L2) and its gradient (BP4-L2). ``weight_decay=0`` gives ``value_and_backprop``'s."""
    c, grads = value_and_backprop(params, X, Y, net)
    if isinstance(weight_decay, (int, float)) and weight_decay == 0:
        return c, grads
    m = jnp.shape(X)[-1] if jnp.ndim(X) > 1 else 1
    return c + l2_penalty(params, m, weight_decay), l2_grads(grads, params, m, weight_decay)
