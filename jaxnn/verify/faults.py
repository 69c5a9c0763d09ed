"""Localising a fault: the first layer at which a backward pass disagrees with autodiff.

``locate_fault(params, X, Y, net, backward_fn)`` compares every layer's
delta^[l] = dC/dZ^[l] of a jaxnn-style backward pass with ``jax.vjp`` of the
network cut at Z^[l] (``reference_deltas``), and dC/dW^[l], dC/db^[l] with
``jax.grad(jaxnn.cost)``, and names the layer and equation (BP1-BP4) where a
wrong formula enters. Errors are measured as in ``jaxnn.verify.measures``.

This module never prints; ``str(report)`` is a table.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxnn import activations
from jaxnn.backpropagation import backward
from jaxnn.network import Cache, Network, check_inputs, cost, forward_unchecked, output_cost
from jaxnn.verify.measures import (
    Errors,
    default_rtol,
    errors,
    format_error,
    lowest_precision,
    passes,
    text_table,
)


class LayerCheck(NamedTuple):
    """Layer l (1-based, as in the math): delta^[l], dC/dW^[l] and dC/db^[l] against references."""

    layer: int
    delta: Errors
    W: Errors
    b: Errors
    delta_ok: bool
    W_ok: bool
    b_ok: bool


_EQUATION = {"W": "BP4", "b": "BP3"}


@dataclasses.dataclass(frozen=True)
class FaultReport:
    """What ``locate_fault`` found: a ``LayerCheck`` per layer (``layers[0]`` is layer 1)."""

    layers: tuple
    rtol: float
    atol: float

    @property
    def ok(self) -> bool:
        return self.fault is None

    @property
    def fault(self):
        """``(layer, quantity, equation)`` of the first disagreement in backprop's order, or None.

        Backprop computes delta^[L], dW^[L], db^[L], then delta^[L-1], and so on
        down to layer 1. An error entering at one of these steps spreads to every
        later step (BP2 carries a wrong delta^[l] into all layers below) but never
        to an earlier one, so the first disagreement in that order is where the
        fault enters; the disagreements after it may be its consequences.
        """
        L = len(self.layers)
        for check in reversed(self.layers):
            l = check.layer
            if not check.delta_ok:
                return l, "delta", "BP1" if l == L else "BP2"
            for name in ("W", "b"):
                if not getattr(check, f"{name}_ok"):
                    return l, name, _EQUATION[name]
        return None

    @property
    def first_bad_layer(self):
        """The layer (1-based) of ``fault``, or None when every layer agrees."""
        return None if self.fault is None else self.fault[0]

    def __str__(self):
        head = ["layer", "delta abs", "delta rel", "delta ulp", "dW rel", "db rel", "status"]
        rows = []
        for check in reversed(self.layers):
            bad = [n for n in ("delta", "W", "b") if not getattr(check, f"{n}_ok")]
            rows.append(
                [
                    str(check.layer),
                    format_error(check.delta.max_abs),
                    format_error(check.delta.max_rel),
                    format_error(check.delta.ulp),
                    format_error(check.W.max_rel),
                    format_error(check.b.max_rel),
                    "ok" if not bad else "DIFFERS: " + ", ".join(bad),
                ]
            )
        lines = [
            "delta^[l] = dC/dZ^[l] vs jax.vjp of the network cut at Z^[l]; dW, db vs "
            f"jax.grad(jaxnn.cost); rtol={self.rtol:.0e}, atol={self.atol:.0e}",
            text_table(head, rows),
        ]
        if self.fault is None:
            lines.append("every layer agrees")
        else:
            l, name, eq = self.fault
            what = {"delta": f"delta^[{l}]", "W": f"dC/dW^[{l}]", "b": f"dC/db^[{l}]"}[name]
            check = self.layers[l - 1]
            abs_, rel, ulp = map(format_error, getattr(check, name)[:3])
            lines.append(
                f"first disagreement, from the output back: layer {l}, {what} ({eq}): "
                f"max abs {abs_}, rel {rel}, {ulp} ulp"
            )
        return "\n".join(lines)


def _tail_cost(Z, params, Y, net: Network, l: int):
    """The cost as a function of Z^[l+1] (0-based l): the network cut at that layer."""
    A = activations.get(net.activations[l]).fn(Z)  # (F-A)
    for k in range(l + 1, net.L):
        Z = params[k]["W"] @ A + params[k]["b"]  # (F-Z)
        A = activations.get(net.activations[k]).fn(Z)  # (F-A)
    return output_cost(Cache([Z], [A]), Y, net)


def reference_deltas(params, X, Y, net: Network):
    """delta^[l] = dC/dZ^[l] for l = 1..L by ``jax.vjp`` of the network cut at Z^[l]."""
    X, Y = check_inputs(params, X, net, Y)
    cache = forward_unchecked(params, X, net)
    deltas = []
    for l in range(net.L):
        value, vjp = jax.vjp(lambda Z, l=l: _tail_cost(Z, params, Y, net, l), cache.Z[l])
        deltas.append(vjp(jnp.ones_like(value))[0])
    return deltas


@functools.partial(jax.jit, static_argnums=3)
def _references(params, X, Y, net):
    return reference_deltas(params, X, Y, net), jax.grad(cost)(params, X, Y, net)


def locate_fault(
    params, X, Y, net: Network, backward_fn=backward, *, fused=True, rtol=None, atol=0.0
) -> FaultReport:
    """Find the first layer at which a backward pass disagrees with automatic differentiation.

    Runs ``backward_fn(params, cache, Y, net, fused=fused)`` (signature of
    ``jaxnn.backward``; it returns ``Backward(grads, deltas)`` or a
    ``(grads, deltas)`` pair, deltas[l] = dC/dZ^[l+1] for the mean cost) on the
    forward cache, and compares, layer by layer from the output back:

      delta^[l]  with ``jax.vjp`` of Z^[l] -> C, the remaining layers and the cost;
      dW^[l], db^[l]  with ``jax.grad(jaxnn.cost)``.

    Args:
      params, X, Y, net: as for ``jaxnn.backprop``.
      backward_fn: the backward pass under test, ``jaxnn.backward`` by default.
      fused: passed to ``backward_fn``.
      rtol: default 1e-8 (float64), 1e-4 (float32).
      atol: absolute tolerance, 0 by default.

    Returns:
      A ``FaultReport``: ``.ok``, ``.first_bad_layer``, ``.fault`` (layer,
      quantity, equation), ``.layers``, and a table as ``str``.
    """
    X, Y = check_inputs(params, X, net, Y)
    rtol = default_rtol(lowest_precision(params)) if rtol is None else rtol
    cache = forward_unchecked(params, X, net)
    result = backward_fn(params, cache, Y, net, fused=fused)
    grads, deltas = (result.grads, result.deltas) if hasattr(result, "deltas") else result
    if len(deltas) != net.L or len(grads) != net.L:
        raise ValueError(
            f"backward_fn returned {len(grads)} gradients and {len(deltas)} deltas for "
            f"a network of {net.L} layers"
        )
    ref_deltas, ref_grads = _references(params, X, Y, net)
    layers = []
    for l in range(net.L):
        err = {
            "delta": errors(deltas[l], ref_deltas[l]),
            "W": errors(grads[l]["W"], ref_grads[l]["W"]),
            "b": errors(grads[l]["b"], ref_grads[l]["b"]),
        }
        ok = {k: passes(v, rtol, atol) for k, v in err.items()}
        layers.append(
            LayerCheck(l + 1, err["delta"], err["W"], err["b"], ok["delta"], ok["W"], ok["b"])
        )
    return FaultReport(tuple(layers), rtol, atol)
