"""``GradientReport``: what ``check_gradients`` found, as a table, HTML, or a dict."""

import dataclasses
from typing import NamedTuple

from jaxnn.verify import render
from jaxnn.verify.kinks import KinkEntries
from jaxnn.verify.measures import Errors, format_error, format_worst

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
    """

    path: str
    shape: tuple
    grad: Errors
    ok: bool
    fd: Errors | None = None
    fd_ok: bool | None = None
    kinks: KinkEntries | None = None


@dataclasses.dataclass(frozen=True)
class GradientReport:
    """What ``check_gradients`` found: one ``LeafCheck`` per checked leaf and the tolerances.

    ``fixed`` lists the paths of leaves held fixed (not float arrays: functions,
    integers, strings); ``directions`` is k in the directional check, else None.
    """

    leaves: tuple
    rtol: float
    atol: float
    h: float | None = None
    fd_rtol: float | None = None
    fd_atol: float | None = None
    directions: int | None = None
    fixed: tuple = ()

    @property
    def ok(self) -> bool:
        return all(leaf.ok and leaf.fd_ok is not False for leaf in self.leaves)

    @property
    def kinks(self) -> int:
        """How many entries (directions) were accepted as at a kink, over all leaves."""
        return sum(leaf.kinks.count for leaf in self.leaves if leaf.kinks)

    def _table(self):
        fd = self.h is not None
        entry = "direction" if self.directions else "entry"
        head = ["leaf", "shape", "max abs", "max rel", "ulp", f"worst {entry}", "kinks", "ok"]
        if fd:
            head += ["FD max abs", "FD max rel", "FD ok"]
        rows = []
        for leaf in self.leaves:
            row = [leaf.path or "(root)", str(leaf.shape), format_error(leaf.grad.max_abs)]
            row += [format_error(leaf.grad.max_rel), format_error(leaf.grad.ulp)]
            row += [format_worst(leaf.grad.worst), str(leaf.kinks.count if leaf.kinks else 0)]
            row += ["ok" if leaf.ok else "FAIL"]
            if fd:
                row += [format_error(leaf.fd.max_abs), format_error(leaf.fd.max_rel)]
                row += ["ok" if leaf.fd_ok else "FAIL"]
            rows.append(row)
        return head, rows

    def _notes(self):
        if self.directions:
            lines = [
                f"hand gradient along {self.directions} random unit directions per leaf vs "
                f"jax.jvp: |<a, v> - jvp| <= atol + rtol ||a||_2, rtol={self.rtol:.0e}, "
                f"atol={self.atol:.0e}; rel = max|<a, v> - jvp| / ||a||_2"
            ]
        else:
            lines = [
                f"hand gradient vs jax.grad: rtol={self.rtol:.0e}, atol={self.atol:.0e}, "
                "rel = max|a - e| / max|e| per leaf; worst entry: hand a, reference e, a - e"
            ]
        if self.h is not None:
            lines.append(
                f"hand gradient vs central differences: h={self.h:.1e}, "
                f"rtol={self.fd_rtol:.0e}, atol={self.fd_atol:.1e}"
            )
        if self.fixed:
            lines.append(f"held fixed (not float arrays): {', '.join(self.fixed)}")
        for leaf in self.leaves:
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

    def __str__(self):
        head, rows = self._table()
        lines = self._notes()
        lines.insert(1 if self.h is None else 2, render.text_table(head, rows))
        lines.append("OK" if self.ok else "FAILED")
        return "\n".join(lines)

    def _repr_html_(self):
        head, rows = self._table()
        notes = self._notes()
        return render.html_table(head, rows, title=notes[0], notes=notes[1:], ok=self.ok)

    def as_dict(self) -> dict:
        """A plain dict (JSON-serialisable; inf and nan as strings) of the whole report."""
        out = render.plain(dataclasses.asdict(self))
        out["leaves"] = [render.plain(leaf) for leaf in self.leaves]
        out["ok"], out["kinks"] = self.ok, self.kinks
        return out
