"""``jaxnn verify``: the verification matrix, hand gradients against jax.grad."""

import json
import os

from jaxnn.cli.common import UsageError, jsonable, write_atomic


def add(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check the hand-derived gradients against jax.grad",
        description="Run the verification matrix and print its table; exit 1 if a row fails.",
    )
    p.add_argument("--json", metavar="PATH", help="also write the rows to PATH as JSON")
    p.set_defaults(handler=run)


def run(args) -> int:
    from jaxnn import verify  # run_matrix enables float64 for its own run

    if args.json and os.path.exists(args.json):
        raise UsageError(f"{args.json} already exists; choose another --json path")
    rows = verify.run_matrix()
    print(verify.format_table(rows))
    if args.json:
        text = json.dumps(jsonable(rows), indent=2, default=_json_default) + "\n"
        write_atomic(args.json, lambda f: f.write(text))
    return 0 if all(row["ok"] for row in rows) else 1


def _json_default(x):
    """numpy and JAX scalars and arrays as JSON numbers and lists; anything else as text."""
    try:
        import numpy as np

        value = np.asarray(x).tolist()
        return jsonable(value)
    except (TypeError, ValueError):
        return str(x)
