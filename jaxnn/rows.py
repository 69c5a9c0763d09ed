"""The row layout: data of shape ``(m, n)``, one example per row, as most JAX code holds it.

The same parameters as the rest of jaxnn (``W^[l]`` stays ``n^[l] x n^[l-1]``,
``b^[l]`` stays ``n^[l] x 1``), the same costs and the same hand-derived
gradients, written for rows: every matrix of examples is the transpose of its
column-layout counterpart (X_rows = X^T, Z_rows^[l] = Z^[l]^T, delta_rows^[l] =
delta^[l]^T), and each equation is its column form transposed
(``docs/derivations.md``, "The row layout"):

  Z^[l]     = A^[l-1] W^[l]^T + b^[l]^T                      (F-Z-R)
  delta^[L] = (1/m) grad_A C (.) sigma'(Z^[L])               (BP1-R)  [softmax: (S2) per row]
  delta^[l] = (delta^[l+1] W^[l+1]) (.) sigma'(Z^[l])        (BP2-R)
  dC/db^[l] = (sum over rows of delta^[l])^T                 (BP3-R)
  dC/dW^[l] = delta^[l]^T A^[l-1]                            (BP4-R)
  dC/dX     = delta^[1] W^[1]                                (BP2-X-R)

No data is transposed: the products contract the dimensions they need as
they lie (``A @ W.T`` and ``delta.T @ A`` are single ``dot_general``s), and
BP2 needs no transpose of W at all. Softmax, its Jacobian product and the
costs act along axis 1, the units of each row. ``Y`` is ``(m, n_L)``, or
integer class labels of shape ``(m,)`` for softmax with cross-entropy. Mixed
precision (``Network.preferred_element_type``) is (F-Z-R) with that result type, (MP).

Example:
  >>> from jaxnn import rows
  >>> cost, grads = rows.value_and_backprop(params, X_batch, y_batch, net)  # (m, n_x), (m,)
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxnn import activations, losses
from jaxnn.backpropagation import Backward
from jaxnn.hand_gradients import cotangent_like, reverse_mode_only, scale_grads, target_grad
from jaxnn.network import Cache, Network, Params, bias_like, check_inputs
from jaxnn.per_example import (
    check_max_norm,
    clip_scales,
    grads_from_errors,
    norms_from_errors,
)
from jaxnn.sharding import sum_over_examples

__all__ = [
    "backprop",
    "backward",
    "backward_from",
    "clipped_mean_grads",
    "cost",
    "cost_with_hand_gradients",
    "forward",
    "forward_unchecked",
    "layer_grads",
    "network_with_hand_gradients",
    "output_cost",
    "output_error",
    "per_example_grad_norms",
    "per_example_grads",
    "predict",
    "propagate",
    "row_bias",
    "value_and_backprop",
]

_UNITS = 1  # the axis of units in a row-layout array; examples are on axis 0
# The column-layout counterparts of the hand-gradient functions, for error hints.
_COLUMNS_COST = "jaxnn.cost_with_hand_gradients"
_COLUMNS_BLOCK = "jaxnn.network_with_hand_gradients"


def __dir__() -> list[str]:
    """The module's public names only (``__all__``), not what it imports."""
    return sorted(__all__)


def row_bias(b: jax.Array) -> jax.Array:
    """b^[l]^T as the ``(1, n^[l])`` row (F-Z-R) adds to every example, from a bias held
    as ``(n^[l], 1)`` or as ``(n^[l],)`` (Flax's and Equinox's shape)."""
    return b.T if b.ndim == 2 else b[None, :]


def forward_unchecked(params: Params, X: jax.Array, net: Network) -> Cache:
    """``forward`` without its input checks; X must already be ``(m, n_x)``."""
    Zs, As = [], [X]
    for l, (layer, act_name) in enumerate(zip(params, net.activations, strict=True)):
        AW_T = jnp.matmul(As[l], layer["W"].T, preferred_element_type=net.preferred_element_type)
        Z = AW_T + row_bias(layer["b"])  # (F-Z-R), (MP): A W^T accumulated in the preferred type
        Zs.append(Z)
        As.append(activations.apply(activations.get(act_name), Z, axis=_UNITS))  # (F-A)
    return Cache(Zs, As)


def forward(params: Params, X: ArrayLike, net: Network) -> Cache:
    """The forward pass for rows: ``Z^[l] = A^[l-1] W^[l]^T + b^[l]^T`` (F-Z-R), ``A^[l] =
    sigma(Z^[l])`` (F-A); the cache holds ``(m, n^[l])`` matrices, ``A[0]`` = X."""
    X, _ = check_inputs(params, X, net, layout="rows", twin="jaxnn.forward")
    return forward_unchecked(params, X, net)


def predict(params: Params, X: ArrayLike, net: Network) -> jax.Array:
    """A^[L], ``(m, n_L)``; a vector X (one example) gives a vector."""
    X2, _ = check_inputs(params, X, net, layout="rows", twin="jaxnn.predict")
    A = forward_unchecked(params, X2, net).A[-1]
    return A[0] if np.ndim(X) == 1 else A


def output_cost(cache: Cache, Y: jax.Array, net: Network) -> jax.Array:
    """The mean over the m rows of the per-example cost, in its stable form (C1-C3), (C-M)."""
    per_example = losses.get(net.loss).stable_value(cache.Z[-1], cache.A[-1], Y, axis=_UNITS)
    return jnp.mean(per_example)  # (C-M)


def cost(params: Params, X: ArrayLike, Y: ArrayLike, net: Network) -> jax.Array:
    """``jaxnn.cost`` for ``(m, n_x)`` inputs and ``(m, n_L)`` targets (or ``(m,)`` labels)."""
    X, Y = check_inputs(params, X, net, Y, layout="rows", twin="jaxnn.cost")
    return output_cost(forward_unchecked(params, X, net), Y, net)


def output_error(cache: Cache, Y: jax.Array, net: Network, *, fused: bool = True) -> jax.Array:
    """Row x is dC_x/dz^[L], example x's own output error, by (F1-F3) or by (BP1-R)."""
    Z, A = cache.Z[-1], cache.A[-1]
    act = activations.get(net.activations[-1])
    closed_form = losses.head(act.name, net.loss).fused
    if fused and closed_form is not None:
        return closed_form(A, Y, axis=_UNITS)  # (F1), (F2), (F3), per row
    grad_a = losses.get(net.loss).grad(A, Y)  # (G1), (G2), (G3)
    return act.vjp(Z, A, grad_a, axis=_UNITS)  # (BP1-R); (S2) per row for softmax


def propagate(
    params: Params, cache: Cache, delta: jax.Array, net: Network
) -> tuple[list[jax.Array], jax.Array]:
    """BP2 for rows from delta^[L] down: ``(deltas, dX)``."""
    deltas = [None] * net.L
    for l in reversed(range(net.L)):
        deltas[l] = delta
        if l > 0:
            act = activations.get(net.activations[l - 1])
            G = delta @ params[l]["W"]
            delta = act.vjp(cache.Z[l - 1], cache.A[l], G, axis=_UNITS)  # (BP2-R)
    dX = deltas[0] @ params[0]["W"]  # (BP2-X-R)
    return deltas, dX


def layer_grads(params: Params, cache: Cache, deltas: list[jax.Array]) -> Params:
    """BP3 and BP4 for rows, in the params' container, shapes and dtypes."""
    grads = [
        {
            "W": sum_over_examples(delta, A_prev, 0).astype(layer["W"].dtype),  # (BP4-R)
            "b": bias_like(jnp.sum(delta, axis=0), layer["b"]),  # (BP3-R), in b's own shape
        }
        for layer, delta, A_prev in zip(params, deltas, cache.A, strict=False)
    ]
    return tuple(grads) if isinstance(params, tuple) else grads


def backward_from(params: Params, cache: Cache, delta: jax.Array, net: Network) -> Backward:
    """BP2-BP4 and dC/dX for rows from a given delta^[L] = dC/dZ^[L], ``(m, n_L)``."""
    deltas, dX = propagate(params, cache, delta, net)
    return Backward(layer_grads(params, cache, deltas), deltas, dX)


def backward(
    params: Params, cache: Cache, Y: jax.Array, net: Network, *, fused: bool = True
) -> Backward:
    """BP1-BP4 for rows over a forward ``cache``; ``deltas[l]`` and ``dX`` are ``(m, n)``."""
    delta = output_error(cache, Y, net, fused=fused) / cache.A[-1].shape[0]  # (C-M)
    return backward_from(params, cache, delta, net)


def value_and_backprop(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, *, fused: bool = True
) -> tuple[jax.Array, Params]:
    """``(cost, grads)`` for rows: ``jaxnn.value_and_backprop`` with X ``(m, n_x)`` and Y
    ``(m, n_L)`` or ``(m,)`` labels. The gradients have the params' structure and shapes."""
    X, Y = check_inputs(params, X, net, Y, layout="rows", twin="jaxnn.value_and_backprop")
    cache = forward_unchecked(params, X, net)
    return output_cost(cache, Y, net), backward(params, cache, Y, net, fused=fused).grads


def backprop(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, *, fused: bool = True
) -> Params:
    """Gradients of ``jaxnn.rows.cost`` by BP1-BP4 for rows; see ``value_and_backprop``."""
    return value_and_backprop(params, X, Y, net, fused=fused)[1]


def _example_errors(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, fused: bool, twin: str
) -> tuple[Cache, list[jax.Array]]:
    """``(cache, errors)`` for rows: every layer's e^[l], row x = dC_x/dz^[l] (no 1/m)."""
    X, Y = check_inputs(params, X, net, Y, layout="rows", twin=twin)
    cache = forward_unchecked(params, X, net)
    errors, _ = propagate(params, cache, output_error(cache, Y, net, fused=fused), net)
    return cache, errors


def per_example_grads(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, *, fused: bool = True
) -> Params:
    """``jaxnn.per_example_grads`` for rows: each example's own gradient (PE-G), every leaf
    with a leading axis m, from X ``(m, n_x)`` and Y ``(m, n_L)`` or ``(m,)`` labels."""
    cache, errors = _example_errors(params, X, Y, net, fused, "jaxnn.per_example_grads")
    return grads_from_errors(params, cache, errors, examples=0)  # (PE-G), rows


def per_example_grad_norms(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, *, fused: bool = True
) -> jax.Array:
    """``jaxnn.per_example_grad_norms`` for rows: each example's gradient norm, (m,)   (PE-N)."""
    cache, errors = _example_errors(params, X, Y, net, fused, "jaxnn.per_example_grad_norms")
    return norms_from_errors(cache, errors, examples=0)  # (PE-N), along each row


def clipped_mean_grads(
    params: Params,
    X: ArrayLike,
    Y: ArrayLike,
    net: Network,
    max_norm: float | jax.Array,
    *,
    fused: bool = True,
) -> Params:
    """``jaxnn.clipped_mean_grads`` for rows: the mean of the per-example gradients, each
    clipped to L2 norm ``max_norm`` (PE-C), by scaling the rows of every delta before
    (BP3-R) and (BP4-R); no per-example gradient is formed."""
    check_max_norm(max_norm)
    cache, errors = _example_errors(params, X, Y, net, fused, "jaxnn.clipped_mean_grads")
    scale = clip_scales(norms_from_errors(cache, errors, examples=0), max_norm)  # (PE-C)
    return layer_grads(params, cache, [e * scale[:, None] for e in errors])  # (BP3-R), (BP4-R)


def cost_with_hand_gradients(net: Network, fused: bool = True) -> Callable[..., jax.Array]:
    """``jaxnn.rows.cost`` for ``net`` as a ``jax.custom_vjp`` whose VJP is BP1-BP4 for rows.

    ``cost(params, X, Y)`` with X ``(m, n_x)``; the cotangents are the hand
    gradients, dC/dX (BP2-X-R) and dC/dY (G-Y1)-(G-Y3), as in
    ``jaxnn.cost_with_hand_gradients``.
    """

    @jax.custom_vjp
    def cost(params, X, Y):
        """The mean cost (C-M) of ``net`` on rows X ``(m, n_x)`` and Y ``(m, n_L)`` (or
        ``(m,)`` labels; one example: vectors); ``jax.grad`` runs (BP1-R)-(BP4-R)."""
        X2, Y2 = check_inputs(params, X, net, Y, layout="rows", twin=_COLUMNS_COST)
        return output_cost(forward_unchecked(params, X2, net), Y2, net)

    def cost_fwd(params, X, Y):
        X2, Y2 = check_inputs(params, X, net, Y, layout="rows", twin=_COLUMNS_COST)
        cache = forward_unchecked(params, X2, net)
        return output_cost(cache, Y2, net), (params, cache, X, Y, Y2)

    def cost_bwd(residuals, g):
        params, cache, X, Y, Y2 = residuals
        grads, _, dX = backward(params, cache, Y2, net, fused=fused)
        dY = target_grad(cache, Y2, net, axis=_UNITS)
        return scale_grads(grads, g, params), cotangent_like(g * dX, X), cotangent_like(g * dY, Y)

    cost.defvjp(cost_fwd, cost_bwd)
    return reverse_mode_only(cost, "jaxnn.rows.cost_with_hand_gradients(net)")


def network_with_hand_gradients(net: Network) -> Callable[[Params, jax.Array], jax.Array]:
    """``jaxnn.network_with_hand_gradients`` for rows: ``f(params, X) -> A^[L]``, ``(m, n_L)``.

    Its VJP runs (BP1-R) with the incoming cotangent, (BP2-R)-(BP4-R) and (BP2-X-R).
    """
    out = activations.get(net.activations[-1])

    @jax.custom_vjp
    def network(params, X):
        """A^[L] of ``net`` for rows X ``(m, n_x)`` (a vector: one example, giving a
        vector); its VJP runs (BP1-R) with the incoming cotangent, then (BP2-R)-(BP4-R)
        and (BP2-X-R). Forward mode raises ``TypeError``."""
        X2, _ = check_inputs(params, X, net, layout="rows", twin=_COLUMNS_BLOCK)
        A = forward_unchecked(params, X2, net).A[-1]
        return A[0] if np.ndim(X) == 1 else A

    def network_fwd(params, X):
        X2, _ = check_inputs(params, X, net, layout="rows", twin=_COLUMNS_BLOCK)
        cache = forward_unchecked(params, X2, net)
        A = cache.A[-1]
        return (A[0] if np.ndim(X) == 1 else A), (params, cache, X)

    def network_bwd(residuals, G):
        params, cache, X = residuals
        G = jnp.reshape(G, cache.A[-1].shape)
        delta = out.vjp(cache.Z[-1], cache.A[-1], G, axis=_UNITS)  # (BP1-R) with G = dC/dA^[L]
        grads, _, dX = backward_from(params, cache, delta, net)  # (BP2-R)-(BP4-R), (BP2-X-R)
        return grads, cotangent_like(dX, X)

    network.defvjp(network_fwd, network_bwd)
    return reverse_mode_only(network, "jaxnn.rows.network_with_hand_gradients(net)")
