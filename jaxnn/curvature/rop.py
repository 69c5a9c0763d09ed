"""The Hessian of the cost times a vector, by Pearlmutter's R-operator, beside BP1-BP4.

R{f} = d/dr f(theta + r V) at r = 0 is the directional derivative along V = {V_W^[l],
V_b^[l]}. Applied to every line of the forward pass and of BP1-BP4 it gives, with
R{A^[0]} = 0 (the inputs do not move):

  R{Z^[l]} = V_W^[l] A^[l-1] + W^[l] R{A^[l-1]} + V_b^[l]                     (R1)
  R{A^[l]} = J^[l] R{Z^[l]}   (sigma'(Z) (.) R{Z}, or (S2): J is symmetric)   (R2)
  R{delta^[L]} = (1/m) H_out R{Z^[L]}   per column, H_out of (H1)-(H3)       (R3)
  R{delta^[l]} = J^[l] (V_W^[l+1]^T delta^[l+1] + W^[l+1]^T R{delta^[l+1]})
                 + Res(W^[l+1]^T delta^[l+1]) R{Z^[l]}                        (R4)
  R{dC/db^[l]} = sum over columns of R{delta^[l]}                             (R5)
  R{dC/dW^[l]} = R{delta^[l]} A^[l-1]^T + delta^[l] R{A^[l-1]}^T              (R6)

and R{dC/dtheta} = H V, the Hessian of the mean cost times V. Res is sigma''s residual
(SD-R), (SD-S1): the term BP2's sigma' contributes when it moves. One forward pass, one
R-forward pass, BP2 and its R-pass side by side, (BP3)-(BP4) and their R-forms: about
twice one backprop's products. Derivations in ``docs/derivations.md``, "Curvature".
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxnn import activations
from jaxnn.backpropagation import output_delta
from jaxnn.curvature.heads import output_hessian_vp
from jaxnn.curvature.second_derivatives import has_residual, residual_vp
from jaxnn.network import (
    Cache,
    Network,
    Params,
    bias_like,
    check_inputs,
    column_bias,
    forward_unchecked,
)
from jaxnn.sharding import sum_over_examples
from jaxnn.validation import shape_of

__all__ = [
    "check_direction",
    "hvp",
    "r_forward",
]


def check_direction(params: Params, V: Any, name: str = "V") -> None:
    """Raise ValueError unless ``V`` has exactly the params' structure, shapes and a
    floating or integer dtype: one ``{"W", "b"}`` per layer, each leaf shaped as the
    params' leaf it moves. Call after ``check_inputs`` has checked ``params``."""
    hint = (
        f"{name} must have the params' structure and shapes (jax.tree.map(jnp.zeros_like, params))"
    )
    if not isinstance(V, (list, tuple)):
        raise ValueError(f"{name} is a {type(V).__name__}; {hint}")
    if len(V) != len(params):
        raise ValueError(f"{name} has {len(V)} layers, params has {len(params)}; {hint}")
    for l, (layer, direction) in enumerate(zip(params, V, strict=True), start=1):
        if not isinstance(direction, dict) or set(direction) != {"W", "b"}:
            got = sorted(direction) if isinstance(direction, dict) else type(direction).__name__
            raise ValueError(f"{name}: layer {l}: expected a dict with keys 'W' and 'b', got {got}")
        for leaf in ("W", "b"):
            got, want = shape_of(direction[leaf]), shape_of(layer[leaf])
            if got != want:
                raise ValueError(
                    f"{name}: layer {l}: {leaf} has shape {got}, params' {leaf} has {want}; {hint}"
                )
            dtype = getattr(direction[leaf], "dtype", None)
            real = dtype is not None and (
                jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)
            )
            if not real:
                what = np.dtype(dtype) if dtype is not None else type(direction[leaf]).__name__
                raise ValueError(
                    f"{name}: layer {l}: {leaf} is {what}; directions must be real arrays"
                )


def r_forward(
    params: Params, cache: Cache, V: Params, net: Network
) -> tuple[list[jax.Array], list[jax.Array | None]]:
    """The R-forward pass: ``(RZ, RA)``, R{Z^[l]} for every layer and R{A^[l]} for the
    hidden ones   (R1), (R2)

    Indexed as ``cache``: ``RZ[l]`` is R{Z^[l+1]}, ``RA[l]`` is R{A^[l]}; ``RA[0]`` (the
    inputs) is None, standing for 0, and R{A^[L]} is not formed (the output's curvature
    is taken in Z^[L]). ``RZ[-1]`` is J V, the Jacobian of Z^[L] in the params times V.
    """
    RZ, RA = [], [None]
    for l, (layer, direction) in enumerate(zip(params, V, strict=True)):
        R_Z = direction["W"] @ cache.A[l] + column_bias(direction["b"])  # (R1)
        if RA[l] is not None:
            R_Z = R_Z + layer["W"] @ RA[l]  # (R1)
        RZ.append(R_Z)
        if l + 1 < net.L:
            act = activations.get(net.activations[l])
            RA.append(act.vjp(cache.Z[l], cache.A[l + 1], R_Z))  # (R2): J R{Z}, J symmetric
    return RZ, RA


def hvp(params: Params, X: ArrayLike, Y: ArrayLike, net: Network, V: Params) -> Params:
    """The Hessian of ``jaxnn.cost`` times ``V``, by the R-operator   (R1)-(R6)

    H V = R{dC/dtheta}: an R-forward pass (R1), (R2) beside the forward pass, and an
    R-backward pass (R3), (R4) beside BP2, with the second derivatives of every hidden
    activation (SD1-SD9, SD-S1) and of the output head (H1)-(H3); then (R5), (R6).

    Args:
      params, X, Y, net: as ``jaxnn.backprop`` (Y may be integer labels for softmax +
        cross-entropy).
      V: the direction, with exactly the params' structure and shapes.

    Returns:
      H V in the params' structure, shapes and dtypes.

    Example:
      >>> V = jax.tree.map(jnp.ones_like, params)
      >>> HV = jaxnn.curvature.hvp(params, X, Y, net, V)  # = jax.jvp(jax.grad(cost), ...)
    """
    X, Y = check_inputs(params, X, net, Y)
    check_direction(params, V)
    cache = forward_unchecked(params, X, net)
    RZ, RA = r_forward(params, cache, V, net)
    m = X.shape[1]
    delta = output_delta(cache, Y, net)  # (BP1), (F1)-(F3)
    R_delta = output_hessian_vp(cache.Z[-1], cache.A[-1], Y, net, RZ[-1]) / m  # (R3)
    grads = [None] * net.L
    # The products as written (W.T @ x): backpropagation.transpose_times' transposed copies,
    # measured for BP2 at small batches on the CPU, made hvp 6% slower at batch 256
    # (784-512-512-10, three interleaved runs), and merging the products over 2m columns
    # with jnp.concatenate gained nothing.
    for l in reversed(range(net.L)):  # params[l] is layer l + 1 of the math
        layer, A_prev, RA_prev = params[l], cache.A[l], RA[l]
        R_dW = sum_over_examples(R_delta, A_prev, 1)  # (R6)
        if RA_prev is not None:  # R{A^[0]} = 0 at the first layer
            R_dW = R_dW + sum_over_examples(delta, RA_prev, 1)  # (R6)
        grads[l] = {
            "W": R_dW.astype(layer["W"].dtype),
            "b": bias_like(jnp.sum(R_delta, axis=1), layer["b"]),  # (R5)
        }
        if l > 0:
            name = net.activations[l - 1]
            Z, A = cache.Z[l - 1], cache.A[l]
            act = activations.get(name)
            W_T_delta = layer["W"].T @ delta  # (BP2)'s product
            R_G = V[l]["W"].T @ delta + layer["W"].T @ R_delta  # (R4): R{W^T delta}
            R_delta = act.vjp(Z, A, R_G)  # (R4)
            if has_residual(name):
                R_delta = R_delta + residual_vp(name, Z, A, W_T_delta, RZ[l - 1])  # (R4)
            delta = act.vjp(Z, A, W_T_delta)  # (BP2)
    return tuple(grads) if isinstance(params, tuple) else grads
