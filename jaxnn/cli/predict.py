"""``jaxnn predict``, ``jaxnn evaluate`` and ``jaxnn export``: a trained run, used.

Each reads a run directory as ``jaxnn.load_run`` does (model.json and the checkpoint
of the best epoch on the validation part, or of the last), and takes its input's
columns by name, in any order, ignoring the others:

* ``jaxnn predict DIR INPUT --out FILE [--proba]``: a CSV with a ``prediction``
  column (class names, or values on the target's scale) and, with ``--proba``, one
  ``proba_<class>`` column per class, a row per input row;
* ``jaxnn evaluate DIR INPUT [--json]``: ``accuracy``, or ``r2`` and ``rmse``, on a
  labelled file;
* ``jaxnn export DIR FILE``: the model as an ONNX graph (``jaxnn.onnx_export``): raw
  float32 features ``(m, n_features)`` in, ``probabilities`` or ``values`` out.

An input that cannot be read (a missing column, a cell that is not a number) is one
line naming it, exit status 2, and nothing is written. Outputs are written atomically
and never over an existing file without ``--force``.
"""

import json
import math
import os

import numpy as np

from jaxnn.cli.common import UsageError, jsonable, require, write_atomic

__all__ = ["add_evaluate", "add_export", "add_predict", "evaluate", "export", "predict"]


def _add_run(p) -> None:
    p.add_argument("run", metavar="DIR", help="a jaxnn train run directory (its --out)")
    p.add_argument(
        "--epoch",
        type=int,
        metavar="E",
        help="use the checkpoint of epoch E; default: the best epoch on the validation part, "
        "else the last",
    )


def _add_force(p, what: str) -> None:
    p.add_argument("--force", action="store_true", help=f"overwrite {what} if it exists")


def add_predict(subparsers) -> None:
    """Add ``jaxnn predict`` to ``subparsers``; its handler is ``predict``."""
    p = subparsers.add_parser(
        "predict",
        help="predict the rows of a file with a trained run",
        description="Write a CSV of the predictions of a trained run for the rows of INPUT "
        "(.csv, .tsv, .parquet or .npz), its columns matched by name.",
    )
    _add_run(p)
    p.add_argument("input", metavar="INPUT", help="the rows to predict")
    p.add_argument("--out", required=True, metavar="FILE", help="the CSV to write")
    p.add_argument(
        "--proba",
        action="store_true",
        help="classification: also one column of probabilities per class, proba_<class>",
    )
    _add_force(p, "--out FILE")
    p.set_defaults(handler=predict)


def add_evaluate(subparsers) -> None:
    """Add ``jaxnn evaluate`` to ``subparsers``; its handler is ``evaluate``."""
    p = subparsers.add_parser(
        "evaluate",
        help="measure a trained run on a labelled file",
        description="Print a trained run's accuracy (classification), or R^2 and RMSE "
        "(regression, on the target's scale), on the rows of a labelled file.",
    )
    _add_run(p)
    p.add_argument("input", metavar="INPUT", help="a labelled file with the run's columns")
    p.add_argument("--json", action="store_true", help="print the metrics as one JSON object")
    p.set_defaults(handler=evaluate)


def add_export(subparsers) -> None:
    """Add ``jaxnn export`` to ``subparsers``; its handler is ``export``."""
    p = subparsers.add_parser(
        "export",
        help="write a trained run as an ONNX graph",
        description="Write a trained run as an ONNX graph, its standardisation included: raw "
        "float32 features (m, n_features) in, 'probabilities' (classification) or 'values' "
        "(regression) out.",
    )
    _add_run(p)
    p.add_argument("file", metavar="FILE", help="the .onnx file to write")
    _add_force(p, "FILE")
    p.set_defaults(handler=export)


def _check_new(path: str, flag: str) -> None:
    """Raise UsageError unless ``path`` may be written: not there, or ``--force``."""
    if os.path.isdir(path):
        raise UsageError(f"{flag} {path} is a directory")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise UsageError(f"{flag} {path}: the directory {parent} does not exist")


def _load(args):
    from jaxnn.model import load_run

    return load_run(args.run, epoch=args.epoch)


def predict(args) -> int:
    """``jaxnn predict``: the CSV of predictions; exit status 0."""
    require("pyarrow", "jaxnn predict")
    _check_new(args.out, "--out")
    if os.path.exists(args.out) and not args.force:
        raise UsageError(f"--out {args.out} already exists; give --force to overwrite it")
    model = _load(args)
    if args.proba and model.task != "classification":
        raise UsageError(f"--proba is for classification; {args.run} is a regression")
    import pyarrow as pa
    import pyarrow.csv as pcsv

    columns = {"prediction": pa.array(model.predict(args.input).tolist())}
    if args.proba:
        proba = model.predict_proba(args.input)
        for name, p in zip(model.classes, proba.T, strict=True):
            columns[f"proba_{name}"] = pa.array(p)
    table = pa.table(columns)
    options = pcsv.WriteOptions(quoting_style="needed")
    write_atomic(args.out, lambda f: pcsv.write_csv(table, f, options), mode="wb")
    print(f"{table.num_rows} predictions of {args.run} (epoch {model.epoch}) -> {args.out}")
    return 0


def metrics_of(model, X, y) -> dict:
    """``accuracy`` (classification), or ``r2`` and ``rmse`` on the target's scale
    (regression), of ``model`` on rows ``X`` with targets ``y`` (class indices, or
    values), and ``m``, the number of rows."""
    if model.task == "classification":
        predicted = model.predict(X)
        truth = np.asarray(model.classes)[y]
        return {"accuracy": float(np.mean(predicted == truth)), "m": len(y)}
    residual = model.predict(X) - y
    total = np.sum((y - y.mean()) ** 2)
    r2 = 1 - float(np.sum(residual**2) / total) if total > 0 else math.nan
    return {"r2": r2, "rmse": float(np.sqrt(np.mean(residual**2))), "m": len(y)}


def evaluate(args) -> int:
    """``jaxnn evaluate``: print the metrics on a labelled file; exit status 0."""
    from jaxnn import tabular

    model = _load(args)
    X, y = tabular.read_labelled(
        args.input, model.feature_names, model.target, model.task, model.classes
    )
    metrics = {**metrics_of(model, X, y), "epoch": model.epoch}
    if args.json:
        print(json.dumps(jsonable(metrics)))  # a NaN R^2 (a constant target) as null
        return 0
    values = ", ".join(f"{k} {v:.4f}" for k, v in metrics.items() if k not in ("m", "epoch"))
    print(f"{values} on {metrics['m']} rows of {args.input} ({args.run}, epoch {model.epoch})")
    return 0


def export(args) -> int:
    """``jaxnn export``: the ONNX graph; exit status 0."""
    require("onnx", "jaxnn export")
    _check_new(args.file, "FILE")
    if os.path.exists(args.file) and not args.force:
        raise UsageError(f"{args.file} already exists; give --force to overwrite it")
    model = _load(args)
    model.export_onnx(args.file)
    output = "probabilities" if model.task == "classification" else "values"
    n = len(model.feature_names)
    print(
        f"{args.run} (epoch {model.epoch}) -> {args.file}: input (m, {n}) float32, raw "
        f"features in the order {', '.join(model.feature_names[:5])}"
        f"{', ...' if n > 5 else ''}; output {output!r}"
    )
    return 0
