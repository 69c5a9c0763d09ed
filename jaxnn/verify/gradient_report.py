"""``GradientReport``: what ``check_gradients`` found, as a table, HTML, or a dict."""

import dataclasses
from typing import NamedTuple

from jaxnn.verify import render
from jaxnn.verify.kinks import KinkEntries
from jaxnn.verify.measures import Errors, format_error, format_worst
from jaxnn.verify.verdicts import combine

__all__ = [
    "GradientReport",
    "LeafCheck",
]


class LeafCheck(NamedTuple):
    """One leaf: its errors against the reference and, optionally, finite differences.

    In the full check ``grad`` compares every entry with ``jax.grad``; in the
    directional check (``directions=k``) its "entries" are the k directions,
    ``<a, v_j>`` against ``jax.jvp``, and its scale is ``||a||_2``. ``grad.worst``
    names the worst entry (or direction): index, hand value, reference value,
    difference. ``kinks`` lists the entries (directions) where the hand value
    differs from the reference but lies between the one-sided derivatives.
    ``status`` is ok, fail or inconclusive; ``note`` says why it is not ok (a nan
    entry, a dtype hint); ``rtol`` and ``atol`` are this leaf's own tolerances.
    """

    path: str
    shape: tuple
    grad: Errors
    ok: bool
    fd: Errors | None = None
    fd_ok: bool | None = None
    kinks: KinkEntries | None = None
    status: str = "ok"
    note: str = ""
    rtol: float | None = None
    atol: float | None = None


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """What ``check_gradients`` found: one ``LeafCheck`` per checked leaf and the tolerances.

    ``fixed`` lists the paths of leaves held fixed (not float arrays: functions,
    integers, strings); ``directions`` is k in the directional check, else None.
    ``status`` is ok (every float entry tested and agreeing), fail, or
    inconclusive (nothing could be tested); ``ok`` is ``status == "ok"``.
    ``problems`` explains a report-level fail or inconclusive (the cost nan at p,
    no float entries); ``atol_scale`` is the natural scale the default atol comes
    from; ``reference`` is what the directional check compared with (jvp, grad).
    """

    leaves: tuple
    rtol: float
    atol: float
    h: float | None = None
    fd_rtol: float | None = None
    fd_atol: float | None = None
    directions: int | None = None
    fixed: tuple = ()
    problems: tuple = ()
    problem_status: str | None = None
    atol_scale: float | None = None
    reference: str | None = None
    empty: tuple = ()

    @property
    def status(self) -> str:
        """ok, fail or inconclusive (see the class docstring)."""
        if self.problem_status is not None:
            return self.problem_status
        return combine(leaf.status for leaf in self.leaves)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def kinks(self) -> int:
        """How many entries (directions) were accepted as at a kink, over all leaves."""
        return sum(leaf.kinks.count for leaf in self.leaves if leaf.kinks)

    def _table(self):
        fd = self.h is not None and any(leaf.fd is not None for leaf in self.leaves)
        entry = "direction" if self.directions else "entry"
        head = ["leaf", "shape", "max abs", "max rel", "ulp", f"worst {entry}", "kinks", "ok"]
        if fd:
            head += ["FD max abs", "FD max rel", "FD ok"]
        rows = []
        for leaf in self.leaves:
            row = [leaf.path or "(root)", str(leaf.shape), format_error(leaf.grad.max_abs)]
            row += [format_error(leaf.grad.max_rel), format_error(leaf.grad.ulp)]
            row += [format_worst(leaf.grad.worst), str(leaf.kinks.count if leaf.kinks else 0)]
            row += [{"ok": "ok", "fail": "FAIL"}.get(leaf.status, leaf.status)]
            if fd and leaf.fd is not None:
                row += [format_error(leaf.fd.max_abs), format_error(leaf.fd.max_rel)]
                row += ["ok" if leaf.fd_ok else "FAIL"]
            elif fd:
                row += ["-", "-", "-"]
            rows.append(row)
        return head, rows

    def _notes(self):
        tols = self._tolerances()
        if self.directions:
            ref = "<jax.grad, v>" if self.reference == "grad" else "jax.jvp"
            lines = [
                f"hand gradient along {self.directions} random unit directions per leaf vs "
                f"{ref}: |<a, v> - ref| <= atol + rtol ||a||_2, {tols}; "
                "rel = max|<a, v> - ref| / ||a||_2"
            ]
        else:
            lines = [
                f"hand gradient vs jax.grad: {tols}, rel = max|a - e| / max|e| per leaf; "
                "worst entry: hand a, reference e, a - e"
            ]
        if self.h is not None:
            lines.append(
                f"hand gradient vs central differences: h={self.h:.1e}, "
                f"rtol={self.fd_rtol:.0e}, atol={self.fd_atol:.1e}"
            )
        if self.fixed:
            lines.append(f"held fixed (not float arrays): {', '.join(self.fixed)}")
        if self.empty:
            lines.append(
                f"empty (nothing to check): {', '.join(p or '(root)' for p in self.empty)}"
            )
        lines += list(self.problems)
        for leaf in self.leaves:
            if leaf.note:
                lines.append(f"{leaf.path or '(root)'}: {leaf.status}: {leaf.note}")
            if leaf.kinks:
                k = leaf.kinks
                where = "; ".join(
                    f"{ix}: hand {format_error(a)} in [{format_error(min(lo, hi))}, "
                    f"{format_error(max(lo, hi))}]"
                    for ix, a, lo, hi in zip(k.index, k.hand, k.left, k.right, strict=True)
                )
                more = f" (first {len(k.index)})" if k.count > len(k.index) else ""
                lines.append(
                    f"{leaf.path or '(root)'}: {k.count} at a kink, between the one-sided "
                    f"derivatives (left, right){more}: {where}"
                )
        return lines

    def _tolerances(self) -> str:
        """``rtol=1e-08, atol=2.2e-13`` (per leaf where they differ; the natural atol's scale)."""
        rtols = sorted({leaf.rtol for leaf in self.leaves if leaf.rtol is not None})
        atols = sorted({leaf.atol for leaf in self.leaves if leaf.atol is not None})
        rtol = "/".join(f"{r:.0e}" for r in rtols) or f"{self.rtol:.0e}"
        atol = "/".join(f"{a:.1e}" for a in atols) or f"{self.atol:.1e}"
        text = f"rtol={rtol}, atol={atol}" + (" (per leaf, by its dtype)" if len(rtols) > 1 else "")
        if self.atol_scale is not None:
            text += (
                f" (atol = min(rtol, 1000 eps) x {self.atol_scale:.2e}, the gradient's natural "
                "scale: its largest entry over all leaves, or |C| / max(|p|, 1))"
            )
        return text

    def __str__(self):
        head, rows = self._table()
        lines = self._notes()
        if rows:
            lines.insert(1 if self.h is None else 2, render.text_table(head, rows))
        lines.append({"ok": "OK", "fail": "FAILED"}.get(self.status, "INCONCLUSIVE (not ok)"))
        return "\n".join(lines)

    def _repr_html_(self):
        head, rows = self._table()
        notes = self._notes()
        return render.html_table(head, rows, title=notes[0], notes=notes[1:], ok=self.ok)

    def as_dict(self) -> dict:
        """A plain dict (JSON-serialisable; inf and nan as strings) of the whole report."""
        out = render.plain(dataclasses.asdict(self))
        out["leaves"] = [render.plain(leaf) for leaf in self.leaves]
        out["ok"], out["kinks"], out["status"] = self.ok, self.kinks, self.status
        return out
