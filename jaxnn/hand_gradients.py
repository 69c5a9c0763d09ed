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

``network_with_hand_gradients(net)`` is the network itself, ``(params, X) ->
A^[L]``, as a block of any model: its VJP takes the incoming cotangent G =
dC/dA^[L] of whatever cost the model computes downstream and runs BP1 with it
(delta^[L] = G (.) sigma'(Z^[L]), or J^T G per column for softmax (S2)), then
BP2-BP4 and dC/dX = W^[1]^T delta^[1] (BP2-X), which flows on to the layers
upstream. ``jax.grad`` of the whole model then uses the hand formulas for the
jaxnn part and autodiff for the rest.

Forward mode: JAX gives a function one custom derivative rule, ``custom_vjp``
or ``custom_jvp``, not both. These functions exist to run the hand-written
backward pass, so they are ``custom_vjp``; a hand tangent pass as a
``custom_jvp`` would make JAX derive reverse mode by transposing it, and
BP1-BP4 would no longer run. So ``jax.jvp``, ``jax.jacfwd`` and
``jax.linearize`` through them raise a ``TypeError`` (when called, under
``jax.jit`` too) that says to take
``jaxnn.cost``, ``jaxnn.forward`` or ``jaxnn.predict`` (plain JAX functions,
the same values) for forward mode. Reverse mode applied to the result of
reverse mode works: ``jax.hessian`` (``jacfwd`` of ``jacrev``) and ``jax.grad``
of a function of the gradient differentiate the backward pass's own jax.numpy
operations, which is the derivative of the hand gradient, so the Hessian is
the true one wherever the hand formulas are smooth (relu' and leaky_relu' are
piecewise constant: their derivative is taken as 0).
"""

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.interpreters.ad import JVPTracer
from jax.typing import ArrayLike

from jaxnn import activations
from jaxnn.backpropagation import backward, backward_from
from jaxnn.losses import TARGET_GRADS
from jaxnn.network import (
    Cache,
    Network,
    Params,
    check_inputs,
    forward_unchecked,
    output_cost,
)

# The row-layout counterparts, for error hints.
_ROWS_COST = "jaxnn.rows.cost_with_hand_gradients"
_ROWS_BLOCK = "jaxnn.rows.network_with_hand_gradients"

__all__ = [
    "cost_with_hand_gradients",
    "cotangent_like",
    "network_with_hand_gradients",
    "reverse_mode_only",
    "scale_grads",
    "target_grad",
]


def target_grad(cache: Cache, Y: jax.Array, net: Network, axis: int = 0) -> jax.Array:
    """dC/dY for the mean cost: each example's dC_x/dy (G-Y1)-(G-Y3), divided by m   (C-M).

    ``axis`` is the axis of units (0: examples in columns; 1: in rows).
    """
    Z, A = cache.Z[-1], cache.A[-1]
    return TARGET_GRADS[net.loss](Z, A, Y, axis=axis) / A.shape[1 - axis]


def cotangent_like(g: jax.Array, primal: ArrayLike) -> jax.Array | None:
    """``g`` shaped and typed like ``primal``; None (a zero cotangent) for integer arrays."""
    dtype = jnp.result_type(primal)
    if not jnp.issubdtype(dtype, jnp.inexact):
        return None
    return jnp.reshape(g, np.shape(primal)).astype(dtype)


def scale_grads(grads: Params, g: jax.Array, params: Params) -> Params:
    """``g * grads`` in the params' own structure and dtypes (a tuple of layers stays one)."""
    return jax.tree.unflatten(
        jax.tree.structure(params),
        [
            (g * d).astype(p.dtype)
            for d, p in zip(jax.tree.leaves(grads), jax.tree.leaves(params), strict=True)
        ],
    )


def reverse_mode_only(f: Callable, name: str) -> Callable:
    """``f`` (a ``jax.custom_vjp`` function) with a forward-mode error that names it.

    JAX's own message ("can't apply forward-mode autodiff (jvp) to a custom_vjp
    function") names neither the function nor what to use instead, and under
    ``jax.jit`` it comes only when the program is lowered. Arguments that are
    JVP tracers (``jax.jvp``, ``jax.jacfwd`` applied to ``f`` itself) are
    refused at once; forward mode over a reverse pass (``jax.hessian``) calls
    ``f`` inside the reverse pass, with other tracers, and works.
    """
    message = (
        f"{name} has a hand-written reverse-mode derivative only (jax.custom_vjp: "
        "BP1-BP4), so jax.jvp, jax.jacfwd and jax.linearize cannot go through it. "
        "For forward mode, differentiate jaxnn.cost, jaxnn.forward or jaxnn.predict "
        "(jaxnn.rows.cost, ...), plain JAX functions with the same values; "
        "jax.grad, jax.vjp, jax.jacrev and jax.hessian work here"
    )

    @functools.wraps(f)
    def wrapped(*args):
        if any(isinstance(leaf, JVPTracer) for leaf in jax.tree.leaves(args)):
            raise TypeError(message)
        try:
            return f(*args)
        except TypeError as e:
            if "forward-mode" not in str(e):
                raise
            raise TypeError(message) from None

    return wrapped


def cost_with_hand_gradients(net: Network, fused: bool = True) -> Callable[..., jax.Array]:
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
        """The mean cost (C-M) of ``net`` on X ``(n_x, m)`` and Y ``(n_L, m)`` (or ``(m,)``
        labels; one example: vectors); ``jax.grad`` runs BP1-BP4, not autodiff."""
        X2, Y2 = check_inputs(params, X, net, Y, twin=_ROWS_COST)
        return output_cost(forward_unchecked(params, X2, net), Y2, net)

    def cost_fwd(params, X, Y):
        X2, Y2 = check_inputs(params, X, net, Y, twin=_ROWS_COST)
        cache = forward_unchecked(params, X2, net)
        return output_cost(cache, Y2, net), (params, cache, X, Y, Y2)

    def cost_bwd(residuals, g):
        params, cache, X, Y, Y2 = residuals
        grads, _, dX = backward(params, cache, Y2, net, fused=fused)  # BP1-BP4, (BP2-X)
        dY = target_grad(cache, Y2, net)
        return scale_grads(grads, g, params), cotangent_like(g * dX, X), cotangent_like(g * dY, Y)

    cost.defvjp(cost_fwd, cost_bwd)
    return reverse_mode_only(cost, "jaxnn.cost_with_hand_gradients(net)")


def network_with_hand_gradients(net: Network) -> Callable[[Params, jax.Array], jax.Array]:
    """The network ``f(params, X) -> A^[L]`` as a block whose reverse-mode derivative is BP1-BP4.

    Its VJP takes any cotangent G = dC/dA^[L] of the same shape as the output,
    runs BP1 with it, delta^[L] = G (.) sigma'(Z^[L]) (J^T G per column for
    softmax, (S2)), then BP2-BP4, and returns the gradients for ``params`` and
    dC/dX = W^[1]^T delta^[1] (BP2-X) for ``X``. So a jaxnn MLP can sit
    anywhere in a model (after an Equinox or Flax feature extractor, before any
    loss) and ``jax.grad`` of the whole runs the hand formulas for its part.

    Args:
      net: the ``Network``; its loss is not used (the cost is the caller's), so it may
        be None: ``jaxnn.Network(sizes, activations)``.

    Returns:
      ``f(params, X)``, equal to ``jaxnn.predict(params, X, net)``: X is
      ``(n_x, m)``, one example per column (a vector is one example, giving a
      vector). Forward mode raises ``TypeError`` (see the module docstring);
      ``jaxnn.rows.network_with_hand_gradients`` takes ``(m, n_x)`` rows.

    Example:
      >>> mlp = jaxnn.network_with_hand_gradients(net)
      >>> loss = lambda params, X, Y: optax.l2_loss(mlp(params, X), Y).mean()
      >>> grads = jax.grad(loss)(params, X, Y)   # BP1-BP4 for the MLP's part
    """
    out = activations.get(net.activations[-1])

    @jax.custom_vjp
    def network(params, X):
        """A^[L] of ``net`` for X ``(n_x, m)``, one example per column (a vector: one
        example, giving a vector); its VJP runs BP1 with the incoming cotangent
        G = dC/dA^[L], then BP2-BP4 and dC/dX (BP2-X). Forward mode raises ``TypeError``."""
        X2, _ = check_inputs(params, X, net, twin=_ROWS_BLOCK)
        A = forward_unchecked(params, X2, net).A[-1]
        return A[:, 0] if np.ndim(X) == 1 else A

    def network_fwd(params, X):
        X2, _ = check_inputs(params, X, net, twin=_ROWS_BLOCK)
        cache = forward_unchecked(params, X2, net)
        A = cache.A[-1]
        return (A[:, 0] if np.ndim(X) == 1 else A), (params, cache, X)

    def network_bwd(residuals, G):
        params, cache, X = residuals
        G = jnp.reshape(G, cache.A[-1].shape)
        delta = out.vjp(cache.Z[-1], cache.A[-1], G)  # (BP1) with G = dC/dA^[L]; (S2)
        grads, _, dX = backward_from(params, cache, delta, net)  # (BP2)-(BP4), (BP2-X)
        return grads, cotangent_like(dX, X)

    network.defvjp(network_fwd, network_bwd)
    return reverse_mode_only(network, "jaxnn.network_with_hand_gradients(net)")
