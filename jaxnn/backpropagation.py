"""Backpropagation by hand: the seeds' BP1-BP4, no automatic differentiation.

With C the mean cost over the m columns (C-M), define delta^[l] = dC/dZ^[l], an
``(n^[l], m)`` matrix whose column x is (1/m) dC_x/dz^[l] for example x, and G the
``(n^[L], m)`` matrix whose column x is grad_a C_x, example x's own cost gradient
(G1-G3), not the mean's (so the 1/m appears once, in BP1). Then

  delta^[L] = (1/m) G (.) sigma'(Z^[L])                  (BP1)   [(1/m) J G for softmax (S2)]
  delta^[l] = (W^[l+1]^T delta^[l+1]) (.) sigma'(Z^[l])  (BP2)
  dC/db^[l] = sum over columns of delta^[l]              (BP3)
  dC/dW^[l] = delta^[l] A^[l-1]^T                        (BP4)
  dC/dX     = W^[1]^T delta^[1]                          (BP2 once more: A^[0] = X has no sigma)

with J the softmax Jacobian J_ij = da_j/dz_i (S1), applied per column.

The seed's per-example BP3 and BP4 become sums over the columns, and the 1/m of
the mean is applied once, to delta^[L]; BP2 is linear in delta, so it carries
through every layer. ``fused=True`` replaces BP1 by its closed form (F1-F3)
where the output activation and loss have one.

Under mixed precision (``Network.preferred_element_type``, (MP)) Z, A and so delta are
in that type: every product of BP2 and BP4 has delta as an operand and returns (so
accumulates in) it, and so does BP3's sum; the gradients are cast to the params' dtype.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import ArrayLike

from jaxnn import activations, losses
from jaxnn.network import (
    Cache,
    Network,
    Params,
    bias_like,
    check_inputs,
    forward_unchecked,
    output_cost,
)
from jaxnn.sharding import sum_over_examples

__all__ = [
    "Backward",
    "backprop",
    "backward",
    "backward_from",
    "layer_grads",
    "output_delta",
    "output_error",
    "propagate",
    "transpose_times",
    "transpose_times_cpu",
    "transpose_times_default",
    "transposed",
    "value_and_backprop",
]


class Backward(NamedTuple):
    """Gradients with the params' structure, every layer's delta^[l] = dC/dZ^[l], and dC/dX."""

    grads: Params
    deltas: list[jax.Array]
    # W^[1]^T delta^[1], (n_x, m): BP2 once more, down to A^[0] = X. Optional, so that
    # code building a Backward(grads, deltas) of its own (a fault injector) still can.
    dX: jax.Array | None = None


def output_error(cache: Cache, Y: jax.Array, net: Network, *, fused: bool = True) -> jax.Array:
    """Column x is dC_x/dz^[L], example x's own output error, by (F1-F3) or by (BP1).

    ``output_delta`` divides it by m for the mean cost; ``jaxnn.per_example``
    uses it as it is.
    """
    Z, A = cache.Z[-1], cache.A[-1]
    act = activations.get(net.activations[-1])
    closed_form = losses.head(act.name, net.loss).fused
    if fused and closed_form is not None:
        return closed_form(A, Y)  # (F1), (F2), (F3)
    grad_a = losses.get(net.loss).grad(A, Y)  # (G1), (G2), (G3)
    return act.vjp(Z, A, grad_a)  # (BP1); (S2) for softmax


def output_delta(cache: Cache, Y: jax.Array, net: Network, *, fused: bool = True) -> jax.Array:
    """delta^[L] = dC/dZ^[L] for the mean cost, by (F1-F3) or by (BP1)."""
    return output_error(cache, Y, net, fused=fused) / cache.A[-1].shape[1]  # (C-M): 1/m, once


def backward(
    params: Params, cache: Cache, Y: jax.Array, net: Network, *, fused: bool = True
) -> Backward:
    """BP1-BP4 over a forward ``cache``, and dC/dX; no input checks (see ``backprop``)."""
    return backward_from(params, cache, output_delta(cache, Y, net, fused=fused), net)


def propagate(
    params: Params, cache: Cache, delta: jax.Array, net: Network
) -> tuple[list[jax.Array], jax.Array]:
    """BP2 from delta^[L] down: ``(deltas, dX)``, every delta^[l] and W^[1]^T delta^[1].

    BP2 is linear in delta, column by column, so any delta^[L] goes down: the
    mean's (``backward``), one example's own (``jaxnn.per_example``), or a
    cotangent's (``jaxnn.network_with_hand_gradients``).
    """
    deltas = [None] * net.L
    for l in reversed(range(net.L)):  # params[l] is layer l + 1 of the math
        deltas[l] = delta
        if l > 0:
            act = activations.get(net.activations[l - 1])
            W_T_delta = transpose_times(params[l]["W"], delta)
            delta = act.vjp(cache.Z[l - 1], cache.A[l], W_T_delta)  # (BP2)
    dX = transpose_times(params[0]["W"], deltas[0])  # (BP2-X): BP2 to A^[0] = X, no sigma'
    return deltas, dX


def layer_grads(params: Params, cache: Cache, deltas: list[jax.Array]) -> Params:
    """BP3 and BP4 from every layer's delta, in the params' container, shapes and dtypes
    (a bias held as ``(n,)`` gets a ``(n,)`` gradient)."""
    # Cast to the params' dtypes, as jax.grad does: float32 params with float64 data
    # (x64 on) must not get float64 gradients, which would promote them on update.
    grads = [
        {
            "W": sum_over_examples(delta, A_prev, 1).astype(layer["W"].dtype),  # (BP4)
            "b": bias_like(jnp.sum(delta, axis=1), layer["b"]),  # (BP3), in b's own shape
        }
        for layer, delta, A_prev in zip(params, deltas, cache.A, strict=False)
    ]
    return tuple(grads) if isinstance(params, tuple) else grads  # as jax.grad gives


def backward_from(params: Params, cache: Cache, delta: jax.Array, net: Network) -> Backward:
    """BP2-BP4 and dC/dX from a given delta^[L] = dC/dZ^[L]; see ``propagate``."""
    deltas, dX = propagate(params, cache, delta, net)
    return Backward(layer_grads(params, cache, deltas), deltas, dX)


def transpose_times(W: jax.Array, delta: jax.Array) -> jax.Array:
    """W^T delta, the product of (BP2): ``transpose_times_cpu`` on the CPU, else
    ``transpose_times_default``.

    The CPU's form was measured on the CPU only, so it applies there only: the
    backend is chosen when the program is lowered (``jax.lax.platform_dependent``),
    which also holds for a program lowered on one machine and compiled for another.
    Both are W^T delta; only the order of the sum's terms, so the last bits, differ.
    """
    return lax.platform_dependent(
        W, delta, cpu=transpose_times_cpu, default=transpose_times_default
    )


def transpose_times_cpu(W: jax.Array, delta: jax.Array) -> jax.Array:
    """W^T delta for XLA's CPU backend: a transposed copy of the smaller side.

    XLA's CPU backend runs a plain product (rows times columns, no operand
    transposed) through its fast matmul library, so one side is copied
    transposed first (see ``transposed``): W, n^[l+1] x n^[l], or, when the m
    columns of delta make less to move (m (n^[l+1] + n^[l]) < n^[l+1] n^[l], e.g.
    a small batch through a wide layer), delta and the product: (delta^T W)^T.
    On the default network (batch 16) the second form makes the step about 7%
    faster (BENCHMARKS.md).
    """
    n_out, n_in = W.shape
    if delta.shape[1] * (n_out + n_in) < n_out * n_in:
        return lax.optimization_barrier(transposed(delta) @ W).T  # (BP2), as (delta^T W)^T
    return transposed(W) @ delta  # (BP2)


def transpose_times_default(W: jax.Array, delta: jax.Array) -> jax.Array:
    """W^T delta as written, for every backend but the CPU: its compiler lays the
    product out as it sees fit (nothing here was measured off the CPU)."""
    return W.T @ delta  # (BP2)


def transposed(A: jax.Array) -> jax.Array:
    """A^T as an array of its own: W^T (or delta^T) for the product of (BP2).

    Written ``W.T @ delta``, XLA folds the transpose into the product, which
    then contracts both operands over their leading dimension; XLA's CPU
    backend runs that form about 1.5-3x slower than a plain product (it is not
    handed to its fast matmul library). The barrier keeps the transpose a copy
    (cheap next to the product), so BP2 is a plain product. Values are
    unchanged. See BENCHMARKS.md. Used on the CPU only (``transpose_times_cpu``).
    """
    return lax.optimization_barrier(A.T)


def value_and_backprop(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, *, fused: bool = True
) -> tuple[jax.Array, Params]:
    """``(cost, grads)`` from one forward pass: the cost (C-M) and BP1-BP4.

    Args:
      params: one ``{"W", "b"}`` dict per layer (see ``init_params``).
      X: ``(n_x, m)`` inputs, one example per column (a vector: one example).
      Y: ``(n_L, m)`` targets; for softmax with cross-entropy, or integer class
        labels of shape ``(m,)``. For one example (a vector X): ``(n_L,)``, or a
        scalar (a class label; the target when n_L = 1), so ``jax.vmap`` over
        examples gives per-example gradients.
      net: the ``Network``.
      fused: use the closed form of delta^[L] (F1-F3) where one exists; False
        always goes through BP1, G (.) sigma'(Z^[L]) or, for softmax, the
        seed's Jacobian product J G (S2).

    Returns:
      The scalar cost and gradients with exactly the params' structure, shapes
      and dtypes.
    """
    X, Y = check_inputs(params, X, net, Y, twin="jaxnn.rows.value_and_backprop")
    cache = forward_unchecked(params, X, net)
    return output_cost(cache, Y, net), backward(params, cache, Y, net, fused=fused).grads


def backprop(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, *, fused: bool = True
) -> Params:
    """Gradients of ``jaxnn.cost`` by BP1-BP4; see ``value_and_backprop``."""
    return value_and_backprop(params, X, Y, net, fused=fused)[1]
