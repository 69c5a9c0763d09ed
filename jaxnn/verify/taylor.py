"""``taylor_test``: the Taylor remainder test, a gradient check with no tolerance to choose.

For a unit direction v and steps h, the first-order Taylor remainder

  r(h) = |C(p + h v) - C(p) - h <g, v>|

is (h^2 / 2) |v^T H v| + O(h^3) when g is the gradient, and h |<g - grad C, v>| +
O(h^2) when it is not. Halving h divides r by 4 (order 2) or by 2 (order 1): the
observed order log2(r(h) / r(h/2)) tells them apart without a tolerance on the
gradient's size, and without a finite-difference step to tune.

**Directions.** Per leaf, v is the unit vector along a_i / ||a_i|| + u, with a_i
the hand gradient's leaf and u a random unit vector (v = u where a_i = 0): for
a hand gradient a = g + e, <e, a> = <e, g> + ||e||^2, so the error shows along
a even where it is orthogonal to g, and u covers what a misses. One more
direction moves every leaf together (``overall``).

**Steps, chosen by the numbers.** h runs over h0 2^-n (n = 0, 1, ..., h0 =
max(||p_i||_2, 1) for leaf i). Two effects spoil the order: at large h the
higher-order terms, at small h rounding: C(p + h v) - C(p) carries an error
of about eps (|C| + h |<g, v>|), which does not shrink with h. A pair of steps
is used only when both remainders exceed ``FLOOR`` = 100 times that rounding
level (then rounding moves the order by less than log2(1.01) ~ 0.015), and
the order reported is the median over the ``LAST`` smallest such pairs: the
asymptotic end, where a wrong gradient's order-1 term, however small, wins.
A leaf passes when its order exceeds 1.5, the midpoint of 1 and 2.

What it cannot see: an error e with |<e, v>|^2 below about 200 eps |C| |v^T H v|
(the order-1 term never rises above rounding before the order-2 term takes
over): measured on a logistic regression, in float64 an error of 0.1% along v
gives order 1.0; in float32 10% gives 0.7-1.2 and 1% is at the limit (orders
0.6-2.3 over seeds), so check float32 gradients in float64 where you can. If the remainder
never rises above rounding at any step (C linear along v, g right to
rounding), the order is None and the leaf passes.

**Kinks.** Where the cost is not twice differentiable along v (a relu at
exactly 0), r(h) has order 1 whatever g is. The same sequence is run with the
autodiff gradient (``jax.grad``) along the same direction: if it too fails to
show order 2, the direction crosses a kink, and the leaf is judged entry-wise
instead (``check_gradients``: jax.grad, with one-sided partials at disagreeing
entries): ``kink`` is True and the leaf passes only if that check passes. A
wrong gradient along a smooth direction still fails (the reference shows order 2).
"""

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.verify import render, trees
from jaxnn.verify.directional import directions
from jaxnn.verify.measures import format_error, lowest_precision

__all__ = [
    "FLOOR",
    "LAST",
    "LeafOrder",
    "TaylorReport",
    "taylor_test",
]

FLOOR = 100.0
LAST = 3


class LeafOrder(NamedTuple):
    """The Taylor test along one direction: the steps, remainders, and the observed order."""

    path: str
    shape: tuple
    order: float | None
    ok: bool
    steps: tuple  # h
    remainders: tuple  # r(h)
    used: tuple  # indices n of the pairs (h_n, h_n+1) the order comes from
    kink: bool = False  # v crosses a kink (jax.grad fails too): judged entry-wise


def _order(steps, rem, floor):
    """Median order over the LAST smallest pairs above the floor; None if none is."""
    rates = []
    for n in range(len(steps) - 1):
        a, b = rem[n], rem[n + 1]
        if np.isfinite(a) and np.isfinite(b) and min(a - floor[n], b - floor[n + 1]) > 0:
            rates.append((n, float(np.log2(a / b))))
    if not rates:
        return None, ()
    last = rates[-LAST:]
    return float(np.median([r for _, r in last])), tuple(n for n, _ in last)


@dataclasses.dataclass(frozen=True)
class TaylorReport:
    """What ``taylor_test`` found: one ``LeafOrder`` per leaf and one for all leaves together."""

    leaves: tuple
    overall: LeafOrder
    dtype: str
    fixed: tuple = ()

    @property
    def ok(self) -> bool:
        return self.overall.ok and all(leaf.ok for leaf in self.leaves)

    @property
    def kinks(self) -> int:
        """How many directions (leaves and overall) cross a kink and were judged entry-wise."""
        return sum(leaf.kink for leaf in (*self.leaves, self.overall))

    @property
    def order(self):
        """The observed order along the direction that moves every leaf."""
        return self.overall.order

    def _table(self):
        head = ["leaf", "shape", "order", "steps used (h)", "remainder there", "ok"]
        rows = []
        for leaf in (*self.leaves, self.overall):
            n = leaf.used
            window = f"{leaf.steps[n[0]]:.1e} .. {leaf.steps[n[-1] + 1]:.1e}" if n else "-"
            rem = (
                f"{format_error(leaf.remainders[n[0]])} .. "
                f"{format_error(leaf.remainders[n[-1] + 1])}"
                if n
                else "below rounding"
            )
            order = "-" if leaf.order is None else f"{leaf.order:.2f}"
            rows.append([leaf.path or "(root)", str(leaf.shape), order, window, rem])
            verdict = "ok" if leaf.ok else "FAIL"
            rows[-1].append(f"{verdict} (at a kink: entry-wise)" if leaf.kink else verdict)
        return head, rows

    def _title(self):
        return (
            f"Taylor test ({self.dtype}): r(h) = |C(p + h v) - C(p) - h <g, v>| ~ h^order; "
            "order 2: g is the gradient, order 1: it is not (pass: order > 1.5)"
        )

    def __str__(self):
        head, rows = self._table()
        lines = [self._title(), render.text_table(head, rows)]
        if self.fixed:
            lines.append(f"held fixed (not float arrays): {', '.join(self.fixed)}")
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)

    def _repr_html_(self):
        head, rows = self._table()
        notes = [f"held fixed: {', '.join(self.fixed)}"] if self.fixed else []
        return render.html_table(head, rows, title=self._title(), notes=notes, ok=self.ok)

    def as_dict(self) -> dict:
        """A plain dict (JSON-serialisable) of the whole report."""
        out = render.plain(dataclasses.asdict(self))
        out["leaves"] = [render.plain(leaf) for leaf in self.leaves]
        out["overall"] = render.plain(self.overall)
        out["ok"], out["order"] = self.ok, self.order
        return out


def taylor_test(grad_fn, cost_fn, params, *args, seed: int = 0, **kwargs) -> TaylorReport:
    """The Taylor remainder test of ``grad_fn`` against ``cost_fn``, per leaf and overall.

    Args:
      grad_fn: ``grad_fn(params, *args, **kwargs)``, the hand gradient (the
        params' structure, or ``None`` at leaves that are not float arrays).
      cost_fn: ``cost_fn(params, *args, **kwargs)``, a JAX-traceable scalar.
      params: the pytree; only its float-array leaves are moved (others are
        held fixed and listed in ``fixed``).
      *args, **kwargs: data and other arguments of both functions.
      seed: seed of the random directions (one per leaf, and one over all).

    Returns:
      A ``TaylorReport``: ``.ok``, ``.order`` (all leaves moved together),
      ``.leaves`` (a ``LeafOrder`` per leaf), a table as ``str``, HTML, ``.as_dict()``.
      Evaluated in the params' dtype (float32 params: a float32 test).

    Example:
      >>> report = jaxnn.taylor_test(my_grad, my_cost, w, x, y=y)
      >>> report.ok, report.order   # (True, 2.0...)
    """
    parts = trees.split(params)
    dtype = lowest_precision(parts.leaves)
    eps = float(jnp.finfo(dtype).eps)
    hand = trees.hand_leaves(grad_fn(params, *args, **kwargs), parts)
    f = lambda leaves: cost_fn(parts.rebuild(leaves), *args, **kwargs)
    scales = _steps(parts.leaves, eps)
    units = directions(seed, parts.leaves, 1)
    c0, values, dots, ref_dots = _evaluate(f, parts.leaves, hand, units, scales)
    c0, values = float(c0), np.asarray(values, np.float64)
    steps = np.asarray(scales, np.float64)
    rem, found = _orders(dots, c0, values, steps, eps)
    _, reference = _orders(ref_dots, c0, values, steps, eps)
    # a direction crosses a kink where even the autodiff gradient fails on a side
    kinked = [not ok and not ref_ok for (_, ok), (_, ref_ok) in zip(found, reference, strict=True)]
    entrywise = None
    if any(kinked):
        from jaxnn.verify.gradients import check_gradients  # gradients imports more

        entrywise = check_gradients(grad_fn, cost_fn, params, *args, **kwargs)
    out = _leaf_orders(parts, found, kinked, entrywise, steps, rem)
    return TaylorReport(tuple(out[:-1]), out[-1], jnp.dtype(dtype).name, tuple(parts.fixed))


def _steps(leaves, eps):
    """h_n = h0 2^-n per direction (each leaf's, then all leaves'), n = 0 .. count - 1."""
    count = int(np.ceil(np.log2(1 / eps) / 2)) + 6
    h0 = [max(float(np.linalg.norm(np.asarray(x, np.float64))), 1.0) for x in leaves]
    h0.append(max(h0))
    return jnp.asarray([[s * 2.0**-n for n in range(count)] for s in h0])


def _directions(units, hand):
    """Per leaf, the unit vector along a_i / ||a_i|| + u (u where a_i = 0)."""
    dirs = []
    for u, a in zip(units, hand, strict=True):
        u = u[0]
        a = a.astype(u.dtype)
        norm = jnp.sqrt(jnp.sum(a * a))
        v = u + jnp.where(norm > 0, a / jnp.where(norm > 0, norm, 1), 0)
        dirs.append(v / jnp.sqrt(jnp.sum(v * v)))
    return dirs


def _evaluate(f, leaves, hand, units, scales):
    """C(p), C(p + h v) at every signed step h of every direction, and <g, v> for the
    hand gradient and ``jax.grad``'s, in one jitted call."""

    @jax.jit
    def run(leaves, hand, units):
        ref = jax.grad(f)(leaves)  # the autodiff reference, along the same directions
        dirs = _directions(units, hand)
        # moves[i][d]: direction d's part in leaf i (d < n: leaf d alone; d = n: all leaves)
        n = len(dirs)
        moves = [
            jnp.stack([v if d == i else jnp.zeros_like(v) for d in range(n)] + [v / np.sqrt(n)])
            for i, v in enumerate(dirs)
        ]
        c0 = f(leaves)

        def along(d_moves_steps):
            move, steps = d_moves_steps
            at = lambda h: f([x + h.astype(x.dtype) * v for x, v in zip(leaves, move, strict=True)])
            return jax.vmap(at)(steps)

        values = jax.lax.map(along, (moves, jnp.concatenate([scales, -scales], axis=1)))
        dot = lambda g: sum(
            jnp.tensordot(m, a.astype(m.dtype), axes=a.ndim) for m, a in zip(moves, g, strict=True)
        )
        return c0, values, dot(hand), dot(ref)

    return run(leaves, hand, units)


def _passes(order):
    """Order above 1.5, the midpoint of 1 and 2, or None (never above rounding)."""
    return order is None or order > 1.5


def _orders(dots, c0, values, steps, eps):
    """Per direction: remainders (h > 0), the worse side's (order, used), both sides ok."""
    count = steps.shape[1]
    signed = np.concatenate([steps, -steps], axis=1)  # both sides: h > 0 and h < 0
    dots = np.asarray(dots, np.float64)[:, None]
    rem = np.abs(values - c0 - signed * dots)
    floor = FLOOR * eps * (abs(c0) + np.abs(signed * dots))
    out = []
    for d in range(len(steps)):
        sides = [
            _order(steps[d], rem[d, s], floor[d, s]) for s in (slice(0, count), slice(count, None))
        ]
        known = [side for side in sides if side[0] is not None]
        worst = min(known, key=lambda side: side[0]) if known else sides[0]
        out.append((worst, all(_passes(o) for o, _ in sides)))
    return rem[:, :count], out


def _leaf_orders(parts, found, kinked, entrywise, steps, rem):
    """A ``LeafOrder`` per direction (each leaf, then all leaves); a kinked direction
    takes the verdict of ``entrywise`` (``check_gradients``) on its leaves."""
    out = []
    names = [*parts.paths, "(all leaves)"]
    shapes = [tuple(np.shape(x)) for x in parts.leaves] + [(sum(np.size(x) for x in parts.leaves),)]
    for d in range(len(names)):
        (order, used), ok = found[d]
        if kinked[d]:
            judged = entrywise.leaves[d : d + 1] if d < len(parts.leaves) else entrywise.leaves
            ok = all(leaf.ok for leaf in judged)
        leaf = LeafOrder(names[d], shapes[d], order, ok, tuple(steps[d]), tuple(rem[d]), used)
        out.append(leaf._replace(kink=kinked[d]))
    return out
