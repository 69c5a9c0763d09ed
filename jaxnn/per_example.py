"""Per-example gradients, the hand-derived way: from the deltas and activations of one pass.

Example x's own cost C_x (not divided by m) has, by BP3 and BP4 for one column,

  dC_x/db^[l] = e_x^[l],   dC_x/dW^[l] = e_x^[l] a_x^[l-1]^T                    (PE-G)

where e^[l] = dC_x/dZ^[l] column by column: the deltas of ``jaxnn.backward``
without the mean's 1/m (``output_error``, then BP2, which is linear per column).
Since ``e a^T`` is an outer product, ||e a^T||_F = ||e|| ||a||, so the norm of
example x's whole gradient needs no gradient at all:

  ||g_x||^2 = sum_l ||e_x^[l]||^2 (||a_x^[l-1]||^2 + 1)                         (PE-N)

and clipping each example's gradient to norm ``max_norm`` before the mean
as DP-SGD does is a scaling of the columns of every delta before BP3 and BP4:

  s_x = min(1, max_norm / ||g_x||),  mean_x s_x g_x = BP3, BP4 of e^[l] diag(s / m)   (PE-C)

``per_example_grad_norms`` and ``clipped_mean_grads`` never form an ``m x
n^[l] x n^[l-1]`` array; ``per_example_grads`` does, since that is what it
returns. Derivations in ``docs/derivations.md``, "Per-example gradients".
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxnn.backpropagation import layer_grads, output_error, propagate
from jaxnn.network import Cache, Network, Params, check_inputs, forward_unchecked

__all__ = [
    "check_max_norm",
    "clip_scales",
    "clipped_mean_grads",
    "grads_from_errors",
    "norms_from_errors",
    "per_example_grad_norms",
    "per_example_grads",
]


def _example_errors(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, fused: bool, twin: str
) -> tuple[Cache, list[jax.Array]]:
    """``(cache, errors)``: the forward cache and every layer's e^[l] = dC_x/dZ^[l] per column."""
    X, Y = check_inputs(params, X, net, Y, twin=twin)
    cache = forward_unchecked(params, X, net)
    errors, _ = propagate(params, cache, output_error(cache, Y, net, fused=fused), net)
    return cache, errors


def grads_from_errors(
    params: Params, cache: Cache, errors: Sequence[jax.Array], examples: int = 1
) -> Params:
    """Every example's own gradient (PE-G) from its errors e^[l] and activations a^[l-1].

    ``examples`` is the axis of examples in ``errors`` and ``cache.A``: 1 for
    columns (this module), 0 for rows (``jaxnn.rows``). Each leaf gains a leading
    axis m; a bias held as ``(n,)`` gets ``(m, n)``, one held as ``(n, 1)`` gets
    ``(m, n, 1)``.
    """
    product = "im,jm->mij" if examples == 1 else "mi,mj->mij"
    grads = [
        {
            "W": jnp.einsum(product, e, A_prev).astype(layer["W"].dtype),  # (PE-G)
            "b": jnp.reshape(  # (PE-G), each example's e_x in b's own shape
                jnp.moveaxis(e, examples, 0), (e.shape[examples], *layer["b"].shape)
            ).astype(layer["b"].dtype),
        }
        for layer, e, A_prev in zip(params, errors, cache.A, strict=False)
    ]
    return tuple(grads) if isinstance(params, tuple) else grads


def norms_from_errors(cache: Cache, errors: Sequence[jax.Array], examples: int = 1) -> jax.Array:
    """||g_x|| for every example x, shape (m,), from the errors and activations alone   (PE-N).

    ``examples``: the axis of examples, as in ``grads_from_errors``.
    """
    units = 1 - examples
    squared = sum(
        jnp.sum(e * e, axis=units) * (jnp.sum(A_prev * A_prev, axis=units) + 1)  # (PE-N)
        for e, A_prev in zip(errors, cache.A, strict=False)
    )
    return jnp.sqrt(squared)


def check_max_norm(max_norm: float | jax.Array) -> None:
    """Raise ValueError unless ``max_norm`` is a positive number (a traced one passes)."""
    if isinstance(max_norm, jax.core.Tracer):
        return
    try:
        number = not isinstance(max_norm, (str, bytes)) and np.ndim(max_norm) == 0
        positive = number and float(max_norm) > 0
    except (TypeError, ValueError):
        positive = False
    if not positive:
        raise ValueError(f"max_norm must be a positive number, got {max_norm!r}")


def clip_scales(norms: jax.Array, max_norm: float | jax.Array) -> jax.Array:
    """s_x / m for every example, (PE-C): s_x = min(1, max_norm / ||g_x||), 1 for g_x = 0."""
    m = norms.shape[0]
    safe = jnp.where(norms > 0, norms, 1)
    return jnp.where(norms > max_norm, max_norm / safe, 1) / m  # (PE-C): s_x / m


def per_example_grads(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, *, fused: bool = True
) -> Params:
    """Each example's own gradient: the params' structure, every leaf with a leading axis m.

    Leaf ``[l]["W"][x]`` is dC_x/dW^[l+1] = e_x a_x^T and ``[l]["b"][x]`` is
    dC_x/db^[l+1] = e_x (PE-G), in the bias's own shape, with C_x example x's
    cost; their mean over x is ``jaxnn.backprop``'s result. X is ``(n_x, m)``,
    Y ``(n_L, m)`` or ``(m,)`` labels (``jaxnn.rows.per_example_grads`` takes rows).
    """
    cache, errors = _example_errors(params, X, Y, net, fused, "jaxnn.rows.per_example_grads")
    return grads_from_errors(params, cache, errors)


def per_example_grad_norms(
    params: Params, X: ArrayLike, Y: ArrayLike, net: Network, *, fused: bool = True
) -> jax.Array:
    """The L2 norm over all leaves of each example's gradient, shape (m,)   (PE-N).

    Equal to the norms of ``per_example_grads`` flattened, computed from one
    forward pass and BP1-BP2 (no BP4): ||e_x||^2 ||a_x||^2 per W, ||e_x||^2 per b.
    """
    cache, errors = _example_errors(params, X, Y, net, fused, "jaxnn.rows.per_example_grad_norms")
    return norms_from_errors(cache, errors)


def clipped_mean_grads(
    params: Params,
    X: ArrayLike,
    Y: ArrayLike,
    net: Network,
    max_norm: float | jax.Array,
    *,
    fused: bool = True,
) -> Params:
    """The mean over examples of each example's gradient clipped to L2 norm ``max_norm``   (PE-C).

    Example x's gradient g_x is scaled by min(1, max_norm / ||g_x||), as DP-SGD
    and per-example clipping need; the mean is taken by scaling the columns of
    every delta by that factor over m before BP3 and BP4, so no per-example
    gradient is formed. An example with a zero gradient keeps scale 1. With a
    ``max_norm`` at least every ||g_x||, this is ``jaxnn.backprop``'s result.

    Args:
      params, X, Y, net: as ``jaxnn.backprop`` (``jaxnn.rows.clipped_mean_grads``
        takes rows).
      max_norm: the clipping norm C > 0 (a Python number, or an array under jit).
      fused: as ``jaxnn.backprop``.
    """
    check_max_norm(max_norm)
    cache, errors = _example_errors(params, X, Y, net, fused, "jaxnn.rows.clipped_mean_grads")
    scale = clip_scales(norms_from_errors(cache, errors), max_norm)  # (PE-C): s_x / m
    return layer_grads(
        params, cache, [e * scale[None, :] for e in errors]
    )  # (BP3), (BP4) of (PE-C)
