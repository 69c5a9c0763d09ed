"""``taylor_test``: the Taylor remainder test, a gradient check with no tolerance to choose.

For a unit direction v and steps h, the first-order Taylor remainder

  r(h) = |C(p + h v) - C(p) - h <g, v>|

is (h^2 / 2) |v^T H v| + O(h^3) when g is the gradient, and h |<g - grad C, v>| +
O(h^2) when it is not. Halving h divides r by 4 (order 2) or by 2 (order 1): the
observed order log2(r(h) / r(h/2)) tells them apart without a tolerance on the
gradient's size, and without a finite-difference step to tune.

**Directions.** Per leaf, v is the unit vector along a_i / ||a_i|| + u, with a_i
the hand gradient's leaf and u a random unit vector turned to <u, a_i> >= 0
(so the sum never vanishes, even for a scalar; v = u where a_i = 0): for
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
0.6-2.3 over seeds). So where float64 is enabled (``jax_enable_x64``), a
float32 or 16-bit point is evaluated in float64 (the same point, exactly):
C's rounding is then float64's, and the hand gradient's own rounding is
allowed for by a floor of rtol h ||a|| (rtol of its dtype, 1e-4 for float32),
so an error above about 1% is seen. If the remainder never rises above the
floor at any step (C linear along v, or rounding hides the order), the order is
None and the verdict is **inconclusive** (not ok): evaluate in float64, at
another point, or with another seed.

**Verdicts.** A nan or inf in the hand gradient, or a cost that is not finite
at p, fails. Steps where C(p + h v) is nan or inf (outside the cost's domain)
are left out; the order comes from the others.

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

from jaxnn.verify import render, trees, verdicts
from jaxnn.verify.directional import directions
from jaxnn.verify.measures import default_rtol, format_error, lowest_precision

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
    status: str = "ok"  # ok, fail, or inconclusive (no order above rounding)
    note: str = ""


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
    evaluated_in: str = ""  # the dtype C was evaluated in (float64 for a promoted point)
    problems: tuple = ()
    problem_status: str | None = None

    @property
    def status(self) -> str:
        """ok (every direction shows order 2), fail, or inconclusive (not ok)."""
        if self.problem_status is not None:
            return self.problem_status
        return verdicts.combine(leaf.status for leaf in (*self.leaves, self.overall))

    @property
    def ok(self) -> bool:
        return self.status == "ok"

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
            verdict = {"ok": "ok", "fail": "FAIL"}.get(leaf.status, leaf.status)
            rows[-1].append(f"{verdict} (at a kink: entry-wise)" if leaf.kink else verdict)
        return head, rows

    def _title(self):
        where = self.dtype
        if self.evaluated_in and self.evaluated_in != self.dtype:
            where = f"{self.dtype} params, C evaluated in {self.evaluated_in}"
        return (
            f"Taylor test ({where}): r(h) = |C(p + h v) - C(p) - h <g, v>| ~ h^order; "
            "order 2: g is the gradient, order 1: it is not (pass: order > 1.5)"
        )

    def __str__(self):
        head, rows = self._table()
        lines = [self._title(), render.text_table(head, rows)]
        if self.fixed:
            lines.append(f"held fixed (not float arrays): {', '.join(self.fixed)}")
        lines += [*self.problems, *self._notes()]
        lines.append({"ok": "OK", "fail": "FAILED"}.get(self.status, "INCONCLUSIVE (not ok)"))
        return "\n".join(lines)

    def _notes(self):
        return [
            f"{leaf.path or '(root)'}: {leaf.status}: {leaf.note}"
            for leaf in (*self.leaves, self.overall)
            if leaf.note
        ]

    def _repr_html_(self):
        head, rows = self._table()
        notes = [f"held fixed: {', '.join(self.fixed)}"] if self.fixed else []
        notes += [*self.problems, *self._notes()]
        return render.html_table(head, rows, title=self._title(), notes=notes, ok=self.ok)

    def as_dict(self) -> dict:
        """A plain dict (JSON-serialisable) of the whole report."""
        out = render.plain(dataclasses.asdict(self))
        out["leaves"] = [render.plain(leaf) for leaf in self.leaves]
        out["overall"] = render.plain(self.overall)
        out["ok"], out["order"], out["status"] = self.ok, self.order, self.status
        return out


def taylor_test(grad_fn, cost_fn, params, *args, seed: int = 0, **kwargs) -> TaylorReport:
    """The Taylor remainder test of ``grad_fn`` against ``cost_fn``, per leaf and overall.

    Args:
      grad_fn: ``grad_fn(params, *args, **kwargs)``, the hand gradient (the
        params' structure, or ``None`` at leaves that are not float arrays).
      cost_fn: ``cost_fn(params, *args, **kwargs)``, a JAX-traceable float scalar.
      params: the pytree; only its float-array leaves are moved (others are
        held fixed and listed in ``fixed``).
      *args, **kwargs: data and other arguments of both functions.
      seed: seed of the random directions (one per leaf, and one over all).

    Returns:
      A ``TaylorReport``: ``.status`` (ok, fail, inconclusive), ``.ok``,
      ``.order`` (all leaves moved together), ``.leaves`` (a ``LeafOrder`` per
      leaf), a table as ``str``, HTML, ``.as_dict()``. Evaluated in float64
      where x64 is enabled (a float32 point promoted exactly), else in the
      params' dtype (``evaluated_in``).

    Example:
      >>> report = jaxnn.taylor_test(my_grad, my_cost, w, x, y=y)
      >>> report.ok, report.order   # (True, 2.0...)
    """
    whole = trees.split(params)
    parts, empty = trees.drop_empty(whole)
    dtype = lowest_precision(parts.leaves)
    name = jnp.dtype(dtype).name
    if not parts.leaves:
        trees.hand_leaves(grad_fn(params, *args, **kwargs), whole)
        note = verdicts.nothing_to_check(whole.fixed, empty)
        overall = LeafOrder("(all leaves)", (0,), None, False, (), (), (), status="inconclusive")
        return TaylorReport((), overall, name, tuple(whole.fixed), name, (note,), "inconclusive")
    f = lambda leaves: cost_fn(parts.rebuild(leaves), *args, **kwargs)
    verdicts.check_cost(f, parts.leaves)
    hand_all = trees.hand_leaves(grad_fn(params, *args, **kwargs), whole)
    hand = [a for a, x in zip(hand_all, whole.leaves, strict=True) if np.size(x)]
    at, eval_dtype = _evaluation_point(f, parts.leaves)
    eps = float(jnp.finfo(eval_dtype).eps)
    # each leaf's hand rounding, where C is evaluated above the leaf's precision
    hand_rtol = [
        default_rtol(jnp.result_type(x)) if jnp.result_type(x) != eval_dtype else 0.0
        for x in parts.leaves
    ]
    bad = [verdicts.nonfinite_note(a, "the hand gradient") for a in hand]
    safe = [jnp.where(jnp.isfinite(a), a, 0) if b else a for a, b in zip(hand, bad, strict=True)]
    scales = _steps(parts.leaves, eps)
    units = directions(seed, parts.leaves, 1)
    c0, values, dots, ref_dots, noise = _evaluate(f, at, safe, units, scales, hand_rtol)
    c0, values = float(c0), np.asarray(values, np.float64)
    steps = np.asarray(scales, np.float64)
    fixed, evaluated = tuple(whole.fixed), jnp.dtype(eval_dtype).name
    if not np.isfinite(c0):
        problem = (f"fail: the cost C(p) is {c0} at the point",)
        out = [LeafOrder(p, (), None, False, (), (), (), status="fail") for p in parts.paths]
        overall = LeafOrder("(all leaves)", (), None, False, (), (), (), status="fail")
        return TaylorReport(tuple(out), overall, name, fixed, evaluated, problem, "fail")
    noise = np.asarray(noise, np.float64)
    found = _orders(dots, c0, values, steps, eps, noise)
    reference = _orders(ref_dots, c0, values, steps, eps, 0.0)
    # a direction crosses a kink where even the autodiff gradient fails on a side
    kinked = [h[1] == "fail" and r[1] == "fail" for h, r in zip(found, reference, strict=True)]
    entrywise = None
    if any(kinked):
        from jaxnn.verify.gradients import check_gradients  # gradients imports more

        entrywise = check_gradients(grad_fn, cost_fn, params, *args, **kwargs)
    out = _leaf_orders(parts, found, kinked, entrywise, steps, bad)
    return TaylorReport(tuple(out[:-1]), out[-1], name, fixed, evaluated)


def _evaluation_point(f, leaves):
    """The leaves to evaluate C at, and C's dtype there: float64 where x64 allows it."""
    if jax.config.jax_enable_x64:
        promoted = [jnp.asarray(x, jnp.float64) for x in leaves]
        out = jax.eval_shape(f, promoted)
        if out.dtype == jnp.float64:
            return promoted, jnp.dtype(jnp.float64)
    return list(leaves), jnp.dtype(jax.eval_shape(f, list(leaves)).dtype)


def _steps(leaves, eps):
    """h_n = h0 2^-n per direction (each leaf's, then all leaves'), n = 0 .. count - 1."""
    count = int(np.ceil(np.log2(1 / eps) / 2)) + 6
    h0 = [max(float(np.linalg.norm(np.asarray(x, np.float64))), 1.0) for x in leaves]
    h0.append(max(h0))
    return jnp.asarray([[s * 2.0**-n for n in range(count)] for s in h0])


def _directions(units, hand):
    """Per leaf, the unit vector along a_i / ||a_i|| + u, u turned to <u, a_i> >= 0."""
    dirs = []
    for u, a in zip(units, hand, strict=True):
        u = u[0]
        a = a.astype(u.dtype)
        u = jnp.where(jnp.vdot(u, a) < 0, -u, u)  # |u + a/|a||^2 >= 2: never 0
        norm = jnp.sqrt(jnp.sum(a * a))
        v = u + jnp.where(norm > 0, a / jnp.where(norm > 0, norm, 1), 0)
        dirs.append(v / jnp.sqrt(jnp.sum(v * v)))
    return dirs


def _evaluate(f, leaves, hand, units, scales, hand_rtol):
    """C(p), C(p + h v) at every signed step h of every direction, <g, v> for the hand
    gradient and ``jax.grad``'s, and the hand's rounding sum_i rtol_i ||a_i|| ||v_i||,
    in one jitted call."""

    @jax.jit
    def run(leaves, hand, units):
        ref = jax.grad(f)(leaves)  # the autodiff reference, along the same directions
        units = [u.astype(x.dtype) for u, x in zip(units, leaves, strict=True)]
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
        size = lambda x: jnp.sqrt(jnp.sum(jnp.square(x), axis=tuple(range(1, x.ndim))))
        noise = sum(
            r * size(m) * jnp.sqrt(jnp.sum(jnp.square(a.astype(m.dtype))))
            for m, a, r in zip(moves, hand, hand_rtol, strict=True)
        )
        return c0, values, dot(hand), dot(ref), noise

    return run(leaves, hand, units)


def _status(order):
    """ok above 1.5 (the midpoint of 1 and 2), fail at or below, inconclusive for None."""
    if order is None:
        return "inconclusive"
    return "ok" if order > 1.5 else "fail"


def _orders(dots, c0, values, steps, eps, noise):
    """Per direction: (the worse side's (order, used), status, that side's remainders).

    The floor is ``FLOOR`` times C's rounding, eps (|C| + |h <g, v>|), plus ``noise``
    h (the hand gradient's own rounding, for a point evaluated above its precision).
    """
    count = steps.shape[1]
    signed = np.concatenate([steps, -steps], axis=1)  # both sides: h > 0 and h < 0
    dots = np.asarray(dots, np.float64)[:, None]
    noise = np.broadcast_to(np.asarray(noise, np.float64), dots.shape[:1])[:, None]
    rem = np.abs(values - c0 - signed * dots)
    floor = FLOOR * eps * (abs(c0) + np.abs(signed * dots)) + noise * np.abs(signed)
    out = []
    for d in range(len(steps)):
        halves = (slice(0, count), slice(count, None))
        sides = [_order(steps[d], rem[d, s], floor[d, s]) for s in halves]
        statuses = [_status(o) for o, _ in sides]
        known = [i for i, side in enumerate(sides) if side[0] is not None]
        worst = min(known, key=lambda i: sides[i][0]) if known else 0
        out.append(
            (
                sides[worst],
                verdicts.combine(x for x in statuses if x != "inconclusive")
                if known
                else "inconclusive",
                rem[d, halves[worst]],
            )
        )
    return out


def _leaf_orders(parts, found, kinked, entrywise, steps, bad):
    """A ``LeafOrder`` per direction (each leaf, then all leaves); a kinked direction
    takes the verdict of ``entrywise`` (``check_gradients``) on its leaves; a leaf whose
    hand gradient has a nan or inf entry (``bad``) fails, and so does the overall direction."""
    out = []
    names = [*parts.paths, "(all leaves)"]
    shapes = [tuple(np.shape(x)) for x in parts.leaves] + [(sum(np.size(x) for x in parts.leaves),)]
    for d in range(len(names)):
        (order, used), status, rem = found[d]
        note = ""
        if kinked[d]:
            judged = entrywise.leaves[d : d + 1] if d < len(parts.leaves) else entrywise.leaves
            status = verdicts.combine(leaf.status for leaf in judged)
        if status == "inconclusive":
            note = (
                "inconclusive: the remainder never rose above rounding (C linear along v, or "
                "the dtype hides the order); evaluate in float64, at another point, or with "
                "another seed"
            )
        mine = bad[d : d + 1] if d < len(parts.leaves) else bad
        if any(mine):
            status, note = "fail", "; ".join(b for b in mine if b)
        leaf = LeafOrder(
            names[d], shapes[d], order, status == "ok", tuple(steps[d]), tuple(rem), used
        )
        out.append(leaf._replace(kink=kinked[d], status=status, note=note))
    return out
