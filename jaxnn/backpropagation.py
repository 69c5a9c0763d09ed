"""Backpropagation by hand: the seeds' BP1-BP4, no automatic differentiation.

With C the mean cost over the m columns (C-M), define delta^[l] = dC/dZ^[l], an
``(n^[l], m)`` matrix whose column x is (1/m) dC_x/dz^[l] for example x, and G the
``(n^[L], m)`` matrix whose column x is grad_a C_x, example x's own cost gradient
(G1-G3), not the mean's (so the 1/m appears once, in BP1). Then

  delta^[L] = (1/m) G (.) sigma'(Z^[L])                  (BP1)   [(1/m) J G for softmax (S2)]
  delta^[l] = (W^[l+1]^T delta^[l+1]) (.) sigma'(Z^[l])  (BP2)
  dC/db^[l] = sum over columns of delta^[l]              (BP3)
  dC/dW^[l] = delta^[l] A^[l-1]^T                        (BP4)

with J the softmax Jacobian J_ij = da_j/dz_i (S1), applied per column.

The seed's per-example BP3 and BP4 become sums over the columns, and the 1/m of
the mean is applied once, to delta^[L]; BP2 is linear in delta, so it carries
through every layer. ``fused=True`` replaces BP1 by its closed form (F1-F3)
where the output activation and loss have one.
"""

from typing import NamedTuple

import jax.numpy as jnp
from jax import lax

from jaxnn import activations, losses
from jaxnn.network import Cache, Network, check_inputs, forward_unchecked, output_cost


class Backward(NamedTuple):
    """Gradients with the params' structure, and every layer's delta^[l] = dC/dZ^[l]."""

    grads: list
    deltas: list


def output_delta(cache: Cache, Y, net: Network, *, fused: bool = True):
    """delta^[L] = dC/dZ^[L] for the mean cost, by (F1-F3) or by (BP1)."""
    Z, A = cache.Z[-1], cache.A[-1]
    m = A.shape[1]
    act = activations.get(net.activations[-1])
    closed_form = losses.head(act.name, net.loss).fused
    if fused and closed_form is not None:
        delta = closed_form(A, Y)  # (F1), (F2), (F3)
    else:
        grad_a = losses.get(net.loss).grad(A, Y)  # (G1), (G2), (G3)
        delta = act.vjp(Z, A, grad_a)  # (BP1); (S2) for softmax
    return delta / m  # (C-M): the mean's 1/m, once


def backward(params, cache: Cache, Y, net: Network, *, fused: bool = True) -> Backward:
    """BP1-BP4 over a forward ``cache``; no input checks (see ``backprop``)."""
    delta = output_delta(cache, Y, net, fused=fused)
    grads = [None] * net.L
    deltas = [None] * net.L
    for l in reversed(range(net.L)):  # params[l] is layer l + 1 of the math
        deltas[l] = delta
        # Cast to the params' dtypes, as jax.grad does: float32 params with float64 data
        # (x64 on) must not get float64 gradients, which would promote them on update.
        grads[l] = {
            "W": (delta @ cache.A[l].T).astype(params[l]["W"].dtype),  # (BP4)
            "b": jnp.sum(delta, axis=1, keepdims=True).astype(params[l]["b"].dtype),  # (BP3)
        }
        if l > 0:
            act = activations.get(net.activations[l - 1])
            W_T = transposed(params[l]["W"])
            delta = act.vjp(cache.Z[l - 1], cache.A[l], W_T @ delta)  # (BP2)
    if isinstance(params, tuple):  # the params' own container, as jax.grad gives
        grads = tuple(grads)
    return Backward(grads, deltas)


def transposed(W):
    """W^T as an array of its own, for the W^[l+1]^T delta^[l+1] of (BP2).

    Written ``W.T @ delta``, XLA folds the transpose into the product, which
    then contracts both operands over their leading dimension; XLA's CPU
    backend runs that form about 1.5-3x slower than a plain product (it is not
    handed to its fast matmul library). The barrier keeps the transpose a copy
    of W (n^[l+1] x n^[l], cheap next to the product), so BP2 is a plain product.
    Values are unchanged. See BENCHMARKS.md.
    """
    return lax.optimization_barrier(W.T)


def value_and_backprop(params, X, Y, net: Network, *, fused: bool = True):
    """``(cost, grads)`` from one forward pass: the cost (C-M) and BP1-BP4.

    Args:
      params: one ``{"W", "b"}`` dict per layer (see ``init_params``).
      X: ``(n_x, m)`` inputs, one example per column (a vector: one example).
      Y: ``(n_L, m)`` targets.
      net: the ``Network``.
      fused: use the closed form of delta^[L] (F1-F3) where one exists; False
        always goes through BP1, G (.) sigma'(Z^[L]) or, for softmax, the
        seed's Jacobian product J G (S2).

    Returns:
      The scalar cost and gradients with exactly the params' structure, shapes
      and dtypes.
    """
    X, Y = check_inputs(params, X, net, Y)
    cache = forward_unchecked(params, X, net)
    return output_cost(cache, Y, net), backward(params, cache, Y, net, fused=fused).grads


def backprop(params, X, Y, net: Network, *, fused: bool = True):
    """Gradients of ``jaxnn.cost`` by BP1-BP4; see ``value_and_backprop``."""
    return value_and_backprop(params, X, Y, net, fused=fused)[1]
