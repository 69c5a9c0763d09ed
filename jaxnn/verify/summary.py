"""The verify matrix on one screen: counts, the worst errors, and every failure in full.

``format_summary(rows)`` condenses the rows of ``jaxnn.verify.run_matrix`` to a
few dozen lines of at most 100 columns: what ran, one line per (output and loss,
fused) with its pass count and worst errors, the worst error of each check and
where it is, and each failing configuration point by point. ``format_table`` in
``jaxnn.verify.matrix`` renders every row; ``jaxnn verify`` prints this summary,
and ``jaxnn verify --full`` the table.

This module never prints; ``jaxnn.cli`` prints what it returns.
"""

import math
import textwrap

from jaxnn.verify.matrix import FD_DIRECTIONS, FD_RTOL, FD_STEP, GRAD_RTOL, NOTES, POINTS
from jaxnn.verify.measures import format_error, text_table

__all__ = [
    "format_summary",
]

_WIDTH = 100
_FAILURES_IN_FULL = 3  # failing rows shown point by point; the next ones one line each
_FAILURES_LISTED = 20
_CHECKS = (
    ("grad_rel_float64", "grad f64", GRAD_RTOL["float64"]),
    ("grad_rel_float32", "grad f32", GRAD_RTOL["float32"]),
    ("fd_rel_float64", "FD f64", FD_RTOL),
)
_SHORT_LOSS = {"cross_entropy": "CE", "binary_cross_entropy": "BCE", "mse": "MSE"}


def _head_name(row) -> str:
    """``softmax + CE``: a row's output activation and loss, short."""
    return f"{row['output']} + {_SHORT_LOSS.get(row['loss'], row['loss'])}"


def _configuration(row) -> str:
    """``depth 2, relu, softmax + CE, fused True (F1)``: which configuration a row is."""
    return (
        f"depth {row['depth']}, {row['hidden']}, {_head_name(row)}, fused {row['fused']} "
        f"({row['delta_L']})"
    )


def _severity(value) -> float:
    """An error as a number to rank by: nan (and 'nan', 'inf' as JSON keeps them) first."""
    value = float(value)
    return math.inf if math.isnan(value) else value


def _worst(rows, key):
    """The row with the largest ``row[key]``, nan winning; None for no rows."""
    return max(rows, key=lambda r: _severity(r[key]), default=None)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


def _counts(rows) -> str:
    sizes = [
        _plural(len({r["hidden"] for r in rows}), "hidden activation"),
        f"{len({_head_name(r) for r in rows})} output + loss",
        _plural(len({r["depth"] for r in rows}), "depth"),
        "fused " + "/".join(str(f) for f in sorted({r["fused"] for r in rows}, reverse=True)),
    ]
    return f"configurations: {len(rows)} = " + " x ".join(sizes)


def _by_head(rows):
    groups = {}
    for r in rows:
        groups.setdefault((_head_name(r), r["fused"], r["delta_L"]), []).append(r)
    body = []
    for (name, fused, delta_L), group in groups.items():
        reasons = {}
        for r in group:
            for item in r["not_applicable"]:
                reasons[item["reason"]] = reasons.get(item["reason"], 0) + 1
        body.append(
            [
                name,
                str(fused),
                delta_L,
                f"{sum(r['ok'] for r in group)}/{len(group)}",
                *(format_error(_worst(group, key)[key]) for key, _, _ in _CHECKS),
                ", ".join(f"{why} {n}" for why, n in reasons.items()),
            ]
        )
    head = ["output + loss", "fused", "delta^L", "pass", *(n for _, n, _ in _CHECKS), "n/a checks"]
    return text_table(head, body)


def _worst_lines(rows):
    lines = []
    for key, name, tol in _CHECKS:
        r = _worst(rows, key)
        lines.append(
            f"  {name:<8}  {format_error(r[key]):>7} (tol {tol:.0e})  at {_configuration(r)}"
        )
    return ["worst error per check, over every configuration and point:", *lines]


def _status(entry) -> str:
    """One point's check as ``ok 4.0e-07``, ``FAIL 3.2e-03`` or ``n/a saturated``."""
    status = entry["status"]
    if status.startswith("n/a"):
        return "n/a " + status[3:].strip(" ()").replace("float64 check n/a", "as f64")
    value = entry.get("grad_rel", entry.get("rel"))
    return f"{status} {format_error(value)}"


def _failure_in_full(row):
    errors = "; ".join(
        f"{name} {format_error(row[key])} (tol {tol:.0e})" for key, name, tol in _CHECKS
    )
    body = [
        [point, *(_status(row["points"][point][c]) for c in ("float64", "float32", "fd"))]
        for point in POINTS
        if point in row["points"]
    ]
    table = text_table(["point", "grad f64", "grad f32", "FD f64"], body)
    return [
        f"FAIL {_configuration(row)}",
        *_wrap(errors, "  "),
        *textwrap.indent(table, "  ").split("\n"),
    ]


def _failure_line(row) -> str:
    errors = ", ".join(format_error(row[key]) for key, _, _ in _CHECKS)
    return f"FAIL {_configuration(row)}: {errors}"


def _wrap(text: str, indent: str = "") -> list:
    return textwrap.wrap(
        text,
        width=_WIDTH,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_on_hyphens=False,
    )


def format_summary(rows, *, more: str = "") -> str:
    """The rows of ``run_matrix`` as a summary of at most 100 columns that fits one screen.

    What ran (configurations, tolerances, points); per output and loss and
    ``fused``, the passing rows out of all and the worst error of each check
    over hidden activations, depths and points, with the number of checks
    ruled n/a and why; the worst error of each check and its configuration;
    every failing configuration (the first 3 point by point, then one line each
    up to 20) and the meaning of its notes;
    ``more`` (say, where the whole table is), if given; and the closing
    count, ``324/324 configurations pass``.
    """
    if not rows:
        return "jaxnn verify: no configuration ran: nothing was verified"
    failed = [r for r in rows if not r["ok"]]
    lines = [
        "jaxnn verify: jaxnn.backprop against jax.grad(jaxnn.cost) and central differences",
        _counts(rows),
        f"tolerances: grad f64 {GRAD_RTOL['float64']:.0e}, grad f32 {GRAD_RTOL['float32']:.0e}; "
        f"FD f64 {FD_RTOL:.0e} of |g| ({FD_DIRECTIONS} directions, h = {FD_STEP:.0e})",
        *_wrap(f"points: {', '.join(POINTS)}; errors: the worst over depths, points, leaves"),
        "",
        _by_head(rows),
        *_wrap(
            "n/a checks: (point, check) pairs where the check cannot succeed by the numerics "
            "of the point, with the reason; the full table's notes explain each"
        ),
        "",
        *_worst_lines(rows),
    ]
    if failed:
        lines.append("")
        for r in failed[:_FAILURES_IN_FULL]:
            lines += _failure_in_full(r)
        lines += [_failure_line(r) for r in failed[_FAILURES_IN_FULL:_FAILURES_LISTED]]
        if len(failed) > _FAILURES_LISTED:
            lines.append(f"... and {len(failed) - _FAILURES_LISTED} more failing configurations")
        for code in sorted({code for r in failed for code in r["notes"]}):
            lines += _wrap(f"{code}: {NOTES.get(code, '')}")
    lines += ["", *_wrap(more), f"{len(rows) - len(failed)}/{len(rows)} configurations pass"]
    return "\n".join(lines)
