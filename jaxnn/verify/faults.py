"""Localising a fault: the first layer at which a backward pass disagrees with autodiff.

``locate_fault(params, X, Y, net, backward_fn)`` runs a jaxnn-style backward
pass and walks its steps in backprop's order (delta^[L], dW^[L], db^[L], then
delta^[L-1], ...), comparing each with automatic differentiation, and names
the layer and equation (BP1-BP4) where a wrong formula enters. Errors are
measured as in ``jaxnn.verify.measures``; each check names its worst entry.

**References.** While every step so far agrees, each step is checked *given the
hand's previous step*: delta^[l] against ``jax.vjp`` of Z^[l] -> Z^[l+1]
applied to the hand's delta^[l+1] (BP2), dW^[l], db^[l] against ``jax.vjp`` of
(W, b) -> Z^[l] applied to the hand's delta^[l] (BP4, BP3); delta^[L] against
``jax.vjp`` of Z^[L] -> C (BP1). Where the hand's steps agree, this equals the
whole-network reference to rounding. After the first disagreement the rest is
compared with the whole-network references (``reference_deltas``, ``jax.grad``),
so the report shows how the fault spreads.

**Kinks** (``jaxnn.verify.kinks``). Where a relu or leaky_relu layer has a
pre-activation exactly at 0, delta^[l] there is (W^[l+1]^T delta^[l+1]) times any
slope between the one-sided ones; JAX takes relu'(0) = 0, leaky_relu'(0) = 1.
A hand delta that differs from JAX's only at such entries, each within
[g s_left, g s_right] (g the upstream dC/dA, the tolerance added), is "at a
kink": counted and located, not a fault. A value outside is a fault (BP1/BP2).
Each kinked (unit, example) is judged separately, so any number of kinks is fine.

This module never prints; ``str(report)`` is a table, ``_repr_html_`` HTML,
``as_dict()`` a plain dict.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn import activations
from jaxnn.backpropagation import backward
from jaxnn.network import (
    Cache,
    Network,
    check_inputs,
    column_bias,
    cost,
    forward_unchecked,
    output_cost,
)
from jaxnn.verify import render
from jaxnn.verify.kinks import KINKS, KinkEntries, kink_entries
from jaxnn.verify.measures import (
    Errors,
    default_rtol,
    errors,
    format_error,
    format_worst,
    lowest_precision,
    natural_atol,
    passes,
)

__all__ = [
    "FaultReport",
    "LayerCheck",
    "locate_fault",
    "reference_deltas",
]


class LayerCheck(NamedTuple):
    """Layer l (1-based, as in the math): delta^[l], dC/dW^[l] and dC/db^[l] against references."""

    layer: int
    delta: Errors
    W: Errors
    b: Errors
    delta_ok: bool
    W_ok: bool
    b_ok: bool
    kinks: KinkEntries | None = None  # delta^[l] entries accepted at a kink


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

    @property
    def kinks(self) -> int:
        """How many delta entries were accepted as at a kink, over all layers."""
        return sum(check.kinks.count for check in self.layers if check.kinks)

    def _table(self):
        head = ["layer", "delta abs", "delta rel", "delta ulp", "worst delta entry", "kinks"]
        head += ["dW rel", "db rel", "status"]
        rows = []
        for check in reversed(self.layers):
            bad = [n for n in ("delta", "W", "b") if not getattr(check, f"{n}_ok")]
            rows.append(
                [
                    str(check.layer),
                    format_error(check.delta.max_abs),
                    format_error(check.delta.max_rel),
                    format_error(check.delta.ulp),
                    format_worst(check.delta.worst),
                    str(check.kinks.count if check.kinks else 0),
                    format_error(check.W.max_rel),
                    format_error(check.b.max_rel),
                    "ok" if not bad else "DIFFERS: " + ", ".join(bad),
                ]
            )
        return head, rows

    def _notes(self):
        lines = [
            "delta^[l] = dC/dZ^[l], dW, db vs jax.vjp, each given the hand's previous step "
            f"(after a disagreement: the whole network's); rtol={self.rtol:.0e}, "
            f"atol={self.atol:.0e}"
        ]
        for check in reversed(self.layers):
            if check.kinks:
                k = check.kinks
                where = "; ".join(
                    f"(unit {ix[0]}, example {ix[1]}): hand {format_error(a)} in "
                    f"[{format_error(min(lo, hi))}, {format_error(max(lo, hi))}]"
                    for ix, a, lo, hi in zip(k.index, k.hand, k.left, k.right, strict=True)
                )
                lines.append(
                    f"layer {check.layer}: {k.count} delta entries at a kink (z = 0), between "
                    f"the one-sided derivatives, not a fault: {where}"
                )
        if self.fault is None:
            lines.append("every layer agrees")
        else:
            l, name, eq = self.fault
            what = {"delta": f"delta^[{l}]", "W": f"dC/dW^[{l}]", "b": f"dC/db^[{l}]"}[name]
            err = getattr(self.layers[l - 1], name)
            abs_, rel, ulp = map(format_error, err[:3])
            lines.append(
                f"first disagreement, from the output back: layer {l}, {what} ({eq}): "
                f"max abs {abs_}, rel {rel}, {ulp} ulp, worst {format_worst(err.worst)}"
            )
        return lines

    def __str__(self):
        head, rows = self._table()
        notes = self._notes()
        return "\n".join([notes[0], render.text_table(head, rows), *notes[1:]])

    def _repr_html_(self):
        head, rows = self._table()
        notes = self._notes()
        return render.html_table(head, rows, title=notes[0], notes=notes[1:], ok=self.ok)

    def as_dict(self) -> dict:
        """A plain dict (JSON-serialisable; inf and nan as strings) of the whole report."""
        out = render.plain(dataclasses.asdict(self))
        out["layers"] = [render.plain(check) for check in self.layers]
        out["ok"], out["fault"], out["kinks"] = self.ok, render.plain(self.fault), self.kinks
        return out


def _tail_cost(Z, params, Y, net: Network, l: int):
    """The cost as a function of Z^[l+1] (0-based l): the network cut at that layer."""
    A = activations.get(net.activations[l]).fn(Z)  # (F-A)
    for k in range(l + 1, net.L):
        Z = params[k]["W"] @ A + column_bias(params[k]["b"])  # (F-Z)
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
def _references(params, X, Y, net, deltas):
    """Whole-network references, and each step's reference given the hand's previous step.

    Returns ``(global_deltas, global_grads, local_deltas, local_grads, upstream)``:
    local_deltas[l] (l < L - 1) is jax.vjp of Z^[l+1] -> Z^[l+2] at the hand's
    deltas[l + 1]; local_grads[l] jax.vjp of (W, b) -> Z at the hand's deltas[l];
    upstream[l] is dC/dA^[l+1] given the hand's deltas[l + 1] (for l = L - 1:
    given the loss), the g of a kink's one-sided values g s_left, g s_right.
    """
    cache = forward_unchecked(params, X, net)
    global_deltas = reference_deltas(params, X, Y, net)
    global_grads = jax.grad(cost)(params, X, Y, net)
    local_deltas, local_grads, upstream = [], [], []
    for l in range(net.L):
        affine = lambda W, b, l=l: W @ cache.A[l] + column_bias(b)
        _, vjp = jax.vjp(affine, params[l]["W"], params[l]["b"])
        dW, db = vjp(deltas[l])
        local_grads.append({"W": dW, "b": db})
        if l < net.L - 1:
            act = activations.get(net.activations[l]).fn
            nxt = params[l + 1]
            _, vjp_z = jax.vjp(
                lambda Z, nxt=nxt, act=act: nxt["W"] @ act(Z) + column_bias(nxt["b"]), cache.Z[l]
            )
            local_deltas.append(vjp_z(deltas[l + 1])[0])
            _, vjp_a = jax.vjp(
                lambda A, nxt=nxt: nxt["W"] @ A + column_bias(nxt["b"]), cache.A[l + 1]
            )
            upstream.append(vjp_a(deltas[l + 1])[0])
        else:
            local_deltas.append(global_deltas[l])
            Z = cache.Z[l]
            value, vjp_a = jax.vjp(lambda A, Z=Z: output_cost(Cache([Z], [A]), Y, net), cache.A[-1])
            upstream.append(vjp_a(jnp.ones_like(value))[0])
    return global_deltas, global_grads, local_deltas, local_grads, upstream


def _kink_check(hand, ref, Z, g, name, rtol, atol):
    """(ok, KinkEntries or None) for one delta^[l] (numpy arrays; name: the activation)."""
    hand, ref = np.asarray(hand, np.float64), np.asarray(ref, np.float64)
    tol = atol + rtol * float(np.max(np.abs(ref), initial=0.0))
    bad = ~(np.abs(hand - ref) <= tol)
    if name not in KINKS or not bad.any():
        return not bad.any(), None
    kink = KINKS[name]
    g = np.asarray(g, np.float64)
    lo, hi = g * kink.left, g * kink.right
    at = (np.asarray(Z) == kink.at) & (np.abs(hi - lo) > tol)
    inside = (np.minimum(lo, hi) - tol <= hand) & (hand <= np.maximum(lo, hi) + tol)
    accepted = bad & at & inside
    ix = np.argwhere(accepted)
    entries = kink_entries(ix, hand[accepted], lo[accepted], hi[accepted]) if len(ix) else None
    return not (bad & ~accepted).any(), entries


_SHAPE_EQUATION = {
    "W": "BP4: dW^[l] = delta^[l] A^[l-1]T, shaped like W^[l] (n^[l], n^[l-1])",
    "b": "BP3: db^[l] = sum over examples of delta^[l], keepdims: (n^[l], 1)",
}


def _check_shapes(params, grads) -> None:
    """Every gradient shaped like its parameter, before any math: else a ValueError
    naming the layer (1-based) and the equation."""
    for l, (p, g) in enumerate(zip(params, grads, strict=True)):
        for name in ("W", "b"):
            if not isinstance(g, dict) or name not in g:
                raise ValueError(f"backward_fn's grads[{l}] (layer {l + 1}) has no {name!r}")
            got, want = np.shape(g[name]), np.shape(p[name])
            if got != want:
                hint = " (transposed?)" if got == want[::-1] else ""
                raise ValueError(
                    f"layer {l + 1}: d{name} has shape {got}, {name}^[{l + 1}] has shape {want}"
                    f"{hint}; {_SHAPE_EQUATION[name]}"
                )


def locate_fault(
    params, X, Y, net: Network, backward_fn=backward, *, fused=True, rtol=None, atol=None
) -> FaultReport:
    """Find the first layer at which a backward pass disagrees with automatic differentiation.

    Runs ``backward_fn(params, cache, Y, net, fused=fused)`` (signature of
    ``jaxnn.backward``; it returns ``Backward(grads, deltas)`` or a
    ``(grads, deltas)`` pair, deltas[l] = dC/dZ^[l+1] for the mean cost) on the
    forward cache and checks its steps in backprop's order, as the module
    docstring describes: delta^[l] (BP1 at l = L, BP2 below), dW^[l] (BP4),
    db^[l] (BP3). A delta that differs only at relu/leaky_relu kinks, between the
    one-sided derivatives, is reported at a kink and is no fault.

    Args:
      params, X, Y, net: as for ``jaxnn.backprop``.
      backward_fn: the backward pass under test, ``jaxnn.backward`` by default.
      fused: passed to ``backward_fn``.
      rtol: default 1e-8 (float64), 1e-4 (float32).
      atol: absolute tolerance; by default ``measures.natural_atol``: min(rtol,
        1000 eps) times the largest entry of any reference delta or gradient, so an
        entry that is exactly 0 (a bias before a normalisation) is no false alarm.

    Returns:
      A ``FaultReport``: ``.ok``, ``.first_bad_layer``, ``.fault`` (layer,
      quantity, equation), ``.kinks``, ``.layers`` (errors with the worst entry),
      a table as ``str``, HTML, ``.as_dict()``.
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
    _check_shapes(params, grads)
    for l in range(net.L):
        if np.shape(deltas[l]) != np.shape(cache.Z[l]):
            raise ValueError(
                f"backward_fn's deltas[{l}] (layer {l + 1}) has shape {np.shape(deltas[l])}, "
                f"Z^[{l + 1}] has shape {np.shape(cache.Z[l])}"
            )
    dtypes = [jnp.result_type(Z) for Z in cache.Z]
    hand_deltas = [jnp.asarray(d, dt) for d, dt in zip(deltas, dtypes, strict=True)]
    g_deltas, g_grads, l_deltas, l_grads, upstream = _references(params, X, Y, net, hand_deltas)
    if atol is None:
        scale = max(float(jnp.max(jnp.abs(x))) for x in jax.tree.leaves((g_deltas, g_grads)))
        atol = natural_atol(rtol, lowest_precision(params), scale)
    layers, clean = [None] * net.L, True
    for l in reversed(range(net.L)):
        ref = l_deltas[l] if clean else g_deltas[l]
        name = net.activations[l]
        delta_ok, kinks = _kink_check(deltas[l], ref, cache.Z[l], upstream[l], name, rtol, atol)
        if not clean:
            kinks = None
            delta_ok = passes(errors(deltas[l], ref), rtol, atol)
        clean = clean and delta_ok
        ref_grads = l_grads[l] if clean else g_grads[l]
        err = {
            "delta": errors(deltas[l], ref),
            "W": errors(grads[l]["W"], ref_grads["W"]),
            "b": errors(grads[l]["b"], ref_grads["b"]),
        }
        ok = {"delta": delta_ok, **{k: passes(err[k], rtol, atol) for k in ("W", "b")}}
        clean = clean and ok["W"] and ok["b"]
        layers[l] = LayerCheck(
            l + 1, err["delta"], err["W"], err["b"], ok["delta"], ok["W"], ok["b"], kinks
        )
    return FaultReport(tuple(layers), rtol, atol)
