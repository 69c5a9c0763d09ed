"""``jaxnn verify``: the verification matrix, hand gradients against jax.grad.

Prints a one-screen summary (``--full``: every row); exits 1, with one line on
stderr, when a configuration fails, when none ran, or when the number of
configurations differs from ``--expect N``: CI passes the count from its own
table, so a configuration the library drops turns CI red instead of shrinking
what is checked.
"""

import json
import os

from jaxnn.cli.common import RunFailed, UsageError, jsonable, write_atomic

__all__ = [
    "add",
    "problems_with",
    "run",
    "weight_decay_line",
]

_CONFIGURATION = ("depth", "hidden", "output", "loss", "fused")  # what makes a row distinct


def add(subparsers) -> None:
    """Add ``jaxnn verify``'s parser to ``subparsers``; its handler is ``run``."""
    p = subparsers.add_parser(
        "verify",
        help="check the hand-derived gradients against jax.grad",
        description="Run the verification matrix (hidden activation x output and loss x depth "
        "x fused, float64 and float32, against jax.grad and finite differences) and print a "
        "summary; exit 1 if a configuration fails.",
    )
    p.add_argument("--full", action="store_true", help="print every row, not the summary")
    p.add_argument("--json", metavar="PATH", help="also write the rows to PATH as JSON")
    p.add_argument(
        "--expect",
        metavar="N",
        type=int,
        help="fail unless exactly N distinct configurations ran (CI passes its own count)",
    )
    p.set_defaults(handler=run)


def run(args) -> int:
    """Run the verify matrix and print it (a summary, or the table with ``--full``); raise
    ``RunFailed`` (exit 1) if ``problems_with`` finds anything."""
    from jaxnn import verify  # run_matrix enables float64 for its own run

    if args.json and os.path.exists(args.json):
        raise UsageError(f"{args.json} already exists; choose another --json path")
    if args.expect is not None and args.expect < 1:
        raise UsageError(f"--expect must be >= 1, got {args.expect}")
    rows = verify.run_matrix()
    if args.full:
        print(verify.format_table(rows))
    else:
        more = "every row: jaxnn verify --full; every number: jaxnn verify --json PATH"
        print(verify.format_summary(rows, more=more))
    decay = verify.check_weight_decay()
    print(weight_decay_line(decay))
    if args.json:
        text = json.dumps(jsonable(rows), indent=2, default=_json_default) + "\n"
        write_atomic(args.json, lambda f: f.write(text))
    problems = problems_with(rows, args.expect)
    failed = [f"{r['output']}+{r['loss']} {r['dtype']}" for r in decay if not r["ok"]]
    if failed or not decay:
        problems.append(f"weight decay (BP4-L2) fails for {', '.join(failed) or 'no head run'}")
    if problems:
        raise RunFailed("; ".join(problems))
    return 0


def weight_decay_line(rows) -> str:
    """One line: how many heads' (BP4-L2) agree with jax.grad of (C-L2), and the worst."""
    ok = sum(r["ok"] for r in rows)
    worst = {d: max((r["error"] for r in rows if r["dtype"] == d), default=float("nan"))
             for d in ("float64", "float32")}  # fmt: skip
    return (
        f"weight decay (C-L2), (BP4-L2) against jax.grad: {ok}/{len(rows)} ok over "
        f"{len(rows) // 2} heads x float64, float32 (worst relative error "
        f"{worst['float64']:.1e}, {worst['float32']:.1e})"
    )


def problems_with(rows, expect=None) -> list:
    """Why a verify run must not pass, one phrase each; [] when it passes.

    ``all([])`` is true: a matrix that ran nothing, or fewer configurations than
    ``expect``, has verified less than it claims, so both fail as a failing row does.
    """
    distinct = len({tuple(row.get(k) for k in _CONFIGURATION) for row in rows})
    problems = []
    if not rows:
        problems.append("the verify matrix ran no configuration: nothing was verified")
    elif distinct != len(rows):
        problems.append(f"{len(rows)} rows hold only {distinct} distinct configurations")
    if rows and expect is not None and distinct != expect:
        problems.append(
            f"ran {distinct} configurations, expected {expect} (--expect): "
            + (
                "a configuration was dropped"
                if distinct < expect
                else "configurations were added: raise --expect in .ci/run and the tests' table"
            )
        )
    failed = sum(not row["ok"] for row in rows)
    if failed:
        problems.append(f"{failed} of {len(rows)} configurations fail (see the rows above)")
    return problems


def _json_default(x):
    """numpy and JAX scalars and arrays as JSON numbers and lists; anything else as text."""
    try:
        import numpy as np

        value = np.asarray(x).tolist()
        return jsonable(value)
    except (TypeError, ValueError):
        return str(x)
