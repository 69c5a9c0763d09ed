"""jaxnn's hand-derived backprop as a JAX gradient, through ``jax.custom_vjp``.

``cost_with_hand_gradients(net)`` is ``jaxnn.cost`` for one network whose
reverse-mode derivative is BP1-BP4 instead of JAX's automatic differentiation:
``jax.grad``, ``jax.value_and_grad``, ``jax.vjp`` and any optax loop built on
them run the hand formulas. The forward pass keeps its cache (every Z^[l] and
A^[l]) as the residuals, so the backward pass recomputes nothing.

Cotangents for all three arguments, for the mean cost C (C-M) over m columns:

  dC/dW^[l], dC/db^[l]  BP4, BP3 (``jaxnn.backward``)
  dC/dX = W^[1]^T delta^[1]   BP2 one layer further down, without a sigma': A^[0] = X
  dC/dY, from the stable form of each cost (``jaxnn.cost`` computes that form),
  per column in ``jaxnn.losses.TARGET_GRADS``, divided by m here (C-M):
    mse                   (1/m) (Y - A^[L])                   (G-Y1), from (C1)
    binary_cross_entropy  (1/m) (log sigma(-Z) - log sigma(Z)) = -(1/m) Z^[L]   (G-Y2)
    cross_entropy         -(1/m) log_softmax(Z^[L])          (G-Y3)

Second order: ``jax.custom_vjp`` functions cannot be differentiated in forward
mode, so ``jax.jvp`` and ``jax.jacfwd`` of the cost raise ``TypeError`` ("can't
apply forward-mode autodiff (jvp) to a custom_vjp function"; ``jax.linearize``
returns a function that raises it when called). Reverse mode
applied to the result of reverse mode works: ``jax.hessian`` (``jacfwd`` of
``jacrev``) and ``jax.grad`` of a function of the gradient differentiate the
backward pass's own jax.numpy operations, which is the derivative of the hand
gradient, so the Hessian is the true one wherever the hand formulas are smooth
(relu' and leaky_relu' are piecewise constant: their derivative is taken as 0).
"""

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.backpropagation import backward
from jaxnn.losses import TARGET_GRADS
from jaxnn.network import Network, check_inputs, forward_unchecked, output_cost


def target_grad(cache, Y, net: Network):
    """dC/dY for the mean cost: each column's dC_x/dy (G-Y1)-(G-Y3), divided by m   (C-M)."""
    Z, A = cache.Z[-1], cache.A[-1]
    return TARGET_GRADS[net.loss](Z, A, Y) / A.shape[1]


def _cotangent(g, primal):
    """``g`` shaped and typed like ``primal``; None (a zero cotangent) for integer arrays."""
    dtype = jnp.result_type(primal)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return None
    return jnp.reshape(g, np.shape(primal)).astype(dtype)


def cost_with_hand_gradients(net: Network, fused: bool = True):
    """``jaxnn.cost`` for ``net`` whose gradients are jaxnn's hand backprop.

    Args:
      net: the ``Network``.
      fused: passed to ``jaxnn.backward``: the closed-form output error (F1-F3)
        where one exists, BP1 otherwise.

    Returns:
      ``cost(params, X, Y)``, a ``jax.custom_vjp`` function equal to
      ``jaxnn.cost(params, X, Y, net)``; its VJP returns (BP1-BP4 gradients,
      dC/dX, dC/dY), each scaled by the output cotangent. It composes with
      ``jax.jit``, ``jax.vmap`` and reverse-mode transformations; forward mode
      (``jax.jvp``, ``jax.jacfwd``) raises ``TypeError`` (see the module docstring).

    Example:
      >>> cost = jaxnn.cost_with_hand_gradients(net)
      >>> grads = jax.grad(cost)(params, X, Y)   # BP1-BP4, not autodiff
      >>> optimizer.update(grads, state, params)  # any optax loop
    """

    @jax.custom_vjp
    def cost(params, X, Y):
        X2, Y2 = check_inputs(params, X, net, Y)
        return output_cost(forward_unchecked(params, X2, net), Y2, net)

    def cost_fwd(params, X, Y):
        X2, Y2 = check_inputs(params, X, net, Y)
        cache = forward_unchecked(params, X2, net)
        return output_cost(cache, Y2, net), (params, cache, X, Y, Y2)

    def cost_bwd(residuals, g):
        params, cache, X, Y, Y2 = residuals
        grads, deltas = backward(params, cache, Y2, net, fused=fused)  # BP1-BP4
        # The params' own structure: a tuple of layers gets a tuple back.
        grads = jax.tree.unflatten(
            jax.tree.structure(params),
            [
                (g * d).astype(p.dtype)
                for d, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params), strict=True)
            ],
        )
        dX = params[0]["W"].T @ deltas[0]  # (BP2) down to A^[0] = X, which has no sigma
        dY = target_grad(cache, Y2, net)
        return grads, _cotangent(g * dX, X), _cotangent(g * dY, Y)

    cost.defvjp(cost_fwd, cost_bwd)
    return cost
