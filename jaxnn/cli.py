"""The ``jaxnn`` command line; the only module of jaxnn that prints.

Subcommands: ``jaxnn train`` trains a network on a dataset and writes a run
directory; ``jaxnn verify`` checks the hand gradients against ``jax.grad``.
A subcommand is a function ``add(subparsers)`` in ``SUBCOMMANDS`` that adds its
parser and sets ``handler``, a function of the parsed arguments that returns
the exit status.

Exit statuses:

* 0: done;
* 1: the run failed after it started: ``jaxnn verify`` found a failing row,
  or training diverged (a cost became NaN or Inf; the last good checkpoint is
  kept); one line on stderr;
* 2: an error a user can fix (bad options, bad or missing data, a run
  directory in the way, a damaged checkpoint): one line, ``jaxnn: error:
  ...``, on stderr, before anything is written;
* 130 (SIGINT, Ctrl-C) or 143 (SIGTERM), i.e. 128 + the signal's number:
  ``jaxnn train`` was interrupted; it finished the epoch under way, saved its
  checkpoint and says how to resume. A second signal stops it at once.
"""

import argparse
import inspect
import json
import math
import os
import shlex
import signal
import sys
import threading
import time

DEFAULTS = {
    "dataset": "digits",
    "data": None,
    "hidden": [256, 128],
    "activation": "relu",
    "optimizer": "adam",
    "learning_rate": 1e-3,
    "epochs": 40,
    "batch_size": 16,
    "seed": 0,
    "gradients": "hand",
}
# Settings a resumed run must keep; --epochs (the total target) and --data (a
# location) may change.
RUN_SETTINGS = (
    "dataset",
    "hidden",
    "activation",
    "optimizer",
    "learning_rate",
    "batch_size",
    "seed",
    "gradients",
)
CONFIG, METRICS, CURVES, CHECKPOINTS = "config.json", "metrics.json", "curves.png", "checkpoints"


class UsageError(Exception):
    """A problem the user can fix; reported as one line, exit status 2."""


class RunFailed(Exception):
    """The run failed after it started (training diverged); one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse, with its errors on one line (no usage block)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def _require(module: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise UsageError(f"{what} needs {module.split('.')[0]}: pip install 'jaxnn[cli]'") from None


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _valid(name: str, value, choices) -> None:
    if value not in choices:
        raise UsageError(f"unknown {name} {value!r}; valid: {', '.join(choices)}")


def _write_atomic(path: str, write, mode: str = "w") -> None:
    """Write through ``write(file)`` to a temporary file, then rename it to ``path``."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, mode) as f:
            write(f)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _jsonable(x):
    """Non-finite floats become None, so the files are standard JSON."""
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def _write_json(path: str, obj) -> None:
    _write_atomic(path, lambda f: f.write(json.dumps(_jsonable(obj), indent=2) + "\n"))


# --- jaxnn train --------------------------------------------------------------------------


def _add_train(subparsers) -> None:
    from jaxnn.activations import ACTIVATIONS
    from jaxnn.data import DATASETS
    from jaxnn.optim import OPTIMIZERS
    from jaxnn.train import GRADIENTS

    d = DEFAULTS
    p = subparsers.add_parser(
        "train",
        help="train a network on a dataset",
        description=(
            "Train a dense network by minibatch descent with hand-derived backpropagation. "
            "The run directory receives metrics.json, curves.png, config.json and "
            "checkpoints/ (the newest 3 epochs)."
        ),
    )
    p.add_argument(
        "--dataset", metavar="{" + ",".join(DATASETS) + "}", help=f"default: {d['dataset']}"
    )
    p.add_argument(
        "--data",
        metavar="DIR",
        help="mnist only: a directory with the four MNIST IDX files (.gz or not) or mnist.npz",
    )
    p.add_argument(
        "--hidden",
        nargs="*",
        type=int,
        metavar="N",
        help="hidden layer sizes, none for no hidden layer; default: "
        + " ".join(map(str, d["hidden"])),
    )
    p.add_argument(
        "--activation",
        metavar="{" + ",".join(ACTIVATIONS) + "}",
        help=f"hidden activation; default: {d['activation']}",
    )
    p.add_argument(
        "--optimizer", metavar="{" + ",".join(OPTIMIZERS) + "}", help=f"default: {d['optimizer']}"
    )
    p.add_argument(
        "--learning-rate", type=float, metavar="A", help=f"default: {d['learning_rate']}"
    )
    p.add_argument(
        "--epochs",
        type=int,
        metavar="N",
        help=f"total epochs, counting those of a resumed run; default: {d['epochs']}",
    )
    p.add_argument("--batch-size", type=int, metavar="B", help=f"default: {d['batch_size']}")
    p.add_argument("--seed", type=int, help=f"default: {d['seed']}")
    p.add_argument(
        "--gradients",
        metavar="{" + ",".join(GRADIENTS) + "}",
        help="hand: backprop (BP1-BP4); autodiff: jax.value_and_grad; default: hand",
    )
    p.add_argument("--out", metavar="DIR", help="run directory; default: runs/<dataset>-<time>")
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out DIR from its newest checkpoint up to --epochs in all",
    )
    p.add_argument(
        "--devices",
        type=int,
        default=1,
        metavar="N",
        help="split each batch over N devices (data-parallel; the batch size must divide by "
        "N); a resumed run may use another N; default: 1",
    )
    p.set_defaults(handler=_train)


def _settings(args) -> tuple[dict, dict | None]:
    """The run's settings, from the flags, the defaults and, with --resume, the run."""
    given = {k: getattr(args, k) for k in DEFAULTS if getattr(args, k) is not None}
    if "data" in given:
        given["data"] = os.path.abspath(given["data"])  # resumable from anywhere
    if not args.resume:
        return {**DEFAULTS, **given}, None
    if args.out is None:
        raise UsageError("--resume needs --out DIR, the run to continue")
    config_path = os.path.join(args.out, CONFIG)
    if not os.path.isdir(os.path.join(args.out, CHECKPOINTS)) or not os.path.isfile(config_path):
        raise UsageError(f"--resume: {args.out} holds no run with a checkpoint to resume")
    try:
        with open(config_path) as f:
            config = json.load(f)
        saved = config["settings"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UsageError(f"--resume: cannot read {config_path}: {e}") from None
    mismatches = [
        f"{_flag(k)} {given[k]!r} but the run has {saved.get(k)!r}"
        for k in RUN_SETTINGS
        if k in given and given[k] != saved.get(k)
    ]
    if mismatches:
        raise UsageError(f"--resume: {args.out} does not match: {'; '.join(mismatches)}")
    settings = {**DEFAULTS, **saved}
    settings.update({k: given[k] for k in ("epochs", "data") if k in given})
    return settings, config


def _check_settings(s: dict) -> None:
    from jaxnn.activations import ACTIVATIONS
    from jaxnn.data import DATASETS
    from jaxnn.optim import OPTIMIZERS
    from jaxnn.train import GRADIENTS

    _valid("dataset", s["dataset"], DATASETS)
    _valid("optimizer", s["optimizer"], OPTIMIZERS)
    _valid("activation", s["activation"], ACTIVATIONS)
    _valid("gradients", s["gradients"], GRADIENTS)
    if not 0 < s["learning_rate"] < math.inf:
        raise UsageError(f"learning rate must be a finite number > 0, got {s['learning_rate']}")
    for name in ("epochs", "batch_size"):
        if s[name] < 1:
            raise UsageError(f"{name.replace('_', ' ')} must be >= 1, got {s[name]}")
    if any(n < 1 for n in s["hidden"]):
        raise UsageError(f"hidden layer sizes must be >= 1, got {' '.join(map(str, s['hidden']))}")
    if s["dataset"] == "mnist" and s["data"] is None:
        raise UsageError(
            "--dataset mnist needs --data DIR, a directory holding the MNIST IDX files or mnist.npz"
        )
    if s["dataset"] != "mnist" and s["data"] is not None:
        raise UsageError(
            f"--data is only for --dataset mnist; {s['dataset']} is bundled with scikit-learn"
        )


def _check_out(out: str, resume: bool) -> None:
    if os.path.exists(out) and not os.path.isdir(out):
        raise UsageError(f"--out {out} is a file, not a directory")
    if not resume and os.path.isdir(out) and os.listdir(out):
        raise UsageError(
            f"{out} already exists and is not empty; continue the run there with --resume "
            "or choose another --out"
        )


def _optimizer_config(name: str, learning_rate: float) -> dict:
    from jaxnn.optim import OPTIMIZERS

    config = {"name": name, "learning_rate": learning_rate}
    for p in inspect.signature(OPTIMIZERS[name]).parameters.values():
        if p.default is not inspect.Parameter.empty:
            config[p.name] = p.default
    return config


def _network_config(net) -> dict:
    return {"sizes": list(net.sizes), "activations": list(net.activations), "loss": net.loss}


def _plot(path: str, history: list, metric: str, title: str) -> None:
    from matplotlib.figure import Figure  # Agg canvas; pyplot's global state never touched

    epochs = [r["epoch"] for r in history]
    series = lambda name: [math.nan if r[name] is None else r[name] for r in history]
    fig = Figure(figsize=(9, 3.6), layout="constrained")
    ax_cost, ax_metric = fig.subplots(1, 2)
    ax_cost.plot(epochs, series("train_cost"), label="train (mean of batches)")
    ax_cost.plot(epochs, series("test_cost"), label="test")
    ax_cost.set(xlabel="epoch", ylabel="cost", yscale="log", title="cost")
    ax_cost.legend()
    ax_metric.plot(epochs, series(f"test_{metric}"), color="C2")
    label = {"accuracy": "test accuracy", "r2": "test R^2"}[metric]
    ax_metric.set(xlabel="epoch", ylabel=label, title=label)
    fig.suptitle(title)
    _write_atomic(path, lambda f: fig.savefig(f, format="png", dpi=100), mode="wb")


def _train(args) -> int:
    settings, config = _settings(args)
    _check_settings(settings)
    tqdm = _require("tqdm", "jaxnn train").tqdm
    _require("matplotlib", "jaxnn train")
    _require("orbax.checkpoint", "jaxnn train")

    import jax

    from jaxnn import checkpoint, data, optim, train

    # Everything is checked before anything is written.
    dataset = data.load(settings["dataset"], settings["data"])
    train.check_data(dataset)
    net = dataset.network(settings["hidden"], settings["activation"])
    train.check_batch_size(settings["batch_size"], dataset.X_train.shape[1])
    mesh = None
    if args.devices != 1:
        from jaxnn import parallel

        mesh = parallel.make_mesh(args.devices)
        parallel.check_divisible(settings["batch_size"], mesh)
    optimizer = optim.OPTIMIZERS[settings["optimizer"]](settings["learning_rate"])
    out = args.out or os.path.join(
        "runs", f"{settings['dataset']}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    _check_out(out, args.resume)
    if config is None:
        config = {
            "settings": settings,
            "network": _network_config(net),
            "optimizer": _optimizer_config(settings["optimizer"], settings["learning_rate"]),
        }
    elif config.get("network") != _network_config(net):
        raise UsageError(
            f"--resume: {out} holds a network {config.get('network')}, the settings "
            f"give {_network_config(net)}"
        )
    key = jax.random.key(settings["seed"])

    if not args.resume:
        os.makedirs(out, exist_ok=True)
        _write_json(os.path.join(out, CONFIG), config)
    metric = train.main_metric(dataset.task)
    with checkpoint.Checkpoints(os.path.join(out, CHECKPOINTS)) as ckpts:
        start = {}
        if args.resume:
            start = _restore(ckpts, net, optimizer, key, settings["epochs"], out, metric)
        seconds_before = start.pop("seconds", 0.0)
        bar = tqdm(
            total=settings["epochs"],
            initial=start.get("start_epoch", 0),
            desc=settings["dataset"],
            unit="epoch",
            file=sys.stderr,
            dynamic_ncols=True,
        )
        t0 = time.perf_counter()

        stop = _StopOnSignal(lambda name: tqdm.write(_stopping(name), file=sys.stderr))

        def on_epoch(epoch, params, opt_state, history):
            meta = {"history": history, "seconds": seconds_before + time.perf_counter() - t0}
            ckpts.save(epoch, params, opt_state, key, _jsonable(meta))
            record = history[-1]
            bar.set_postfix(
                {"cost": f"{record['train_cost']:.4g}", metric: f"{record[f'test_{metric}']:.4f}"},
                refresh=False,
            )
            bar.update(1)
            return stop.signum is not None  # stop once this epoch is saved

        try:
            with stop:
                result = train.fit(
                    net,
                    optimizer,
                    dataset,
                    settings["epochs"],
                    settings["batch_size"],
                    key,
                    callback=on_epoch,
                    gradients=settings["gradients"],
                    mesh=mesh,
                    **start,
                )
        except train.NonFiniteCostError as e:
            kept = ckpts.latest_epoch()
            where = (
                f"kept the last good checkpoint, epoch {kept}, in {ckpts.directory}"
                if kept is not None
                else "no epoch finished, so no checkpoint was saved"
            )
            raise RunFailed(f"training diverged: {e}; {where}") from None
        finally:
            bar.close()
    done = result.history[-1]["epoch"]
    if stop.signum is not None and done < settings["epochs"]:
        resume = f"jaxnn train --resume --out {shlex.quote(out)}"
        if args.devices != 1:
            resume += f" --devices {args.devices}"
        print(
            f"jaxnn: interrupted by {signal.Signals(stop.signum).name} after epoch {done} of "
            f"{settings['epochs']}; its checkpoint is saved; resume with: {resume}",
            file=sys.stderr,
        )
        return 128 + stop.signum
    seconds = seconds_before + time.perf_counter() - t0
    _report(out, settings, config, dataset.task, result.history, seconds, args.devices)
    return 0


def _stopping(name: str) -> str:
    return f"jaxnn: {name}: stopping once this epoch's checkpoint is saved (again: stop at once)"


class _StopOnSignal:
    """While active, SIGINT and SIGTERM set ``signum`` instead of stopping the process.

    The first signal puts the previous handlers back, so a second one acts as
    usual (SIGINT: KeyboardInterrupt; SIGTERM: the process ends). Only the
    main thread can take signals; elsewhere this does nothing.
    """

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, notify):
        self.signum = None
        self._notify = notify
        self._previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        return self

    def _handle(self, signum, frame):
        self.signum = signum
        self._restore()
        self._notify(signal.Signals(signum).name)

    def _restore(self):
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def __exit__(self, *exc):
        self._restore()


def _restore(ckpts, net, optimizer, key, epochs: int, out: str, metric: str) -> dict:
    """``fit``'s keyword arguments to continue the run, and its ``seconds`` so far."""
    import jax

    from jaxnn.network import init_params

    init_key, _ = jax.random.split(key)  # as fit does: the template is the same network
    template = init_params(init_key, net)
    restored = ckpts.restore(template, optimizer.init(template), key)
    if restored.epoch >= epochs:
        raise UsageError(
            f"--resume: {out} has {restored.epoch} epochs already; --epochs is the total, "
            f"so give more than {restored.epoch}"
        )
    history = restored.meta.get("history")
    keys = {"epoch", "train_cost", "test_cost", f"test_{metric}"}
    if not (
        isinstance(history, list)
        and all(isinstance(r, dict) and keys <= set(r) for r in history)
        and [r["epoch"] for r in history] == list(range(1, restored.epoch + 1))
    ):
        raise UsageError(
            f"--resume: the checkpoint of epoch {restored.epoch} in {ckpts.directory} has no "
            f"valid history (a record per epoch 1..{restored.epoch}, each with "
            f"{', '.join(sorted(keys))})"
        )
    seconds = restored.meta.get("seconds")
    return {
        "params": restored.params,
        "opt_state": restored.opt_state,
        "start_epoch": restored.epoch,
        "history": history,
        "seconds": float(seconds) if isinstance(seconds, (int, float)) else 0.0,
    }


def _report(out, settings, config, task, history, seconds, devices=1) -> None:
    """Write metrics.json and curves.png; print the summary line."""
    from jaxnn.train import main_metric

    metric = main_metric(task)
    final = history[-1]
    metrics = {
        "dataset": settings["dataset"],
        "task": task,
        "network": config["network"],
        "optimizer": config["optimizer"],
        "batch_size": settings["batch_size"],
        "seed": settings["seed"],
        "gradients": settings["gradients"],
        "epochs": settings["epochs"],
        "devices": devices,
        "seconds": seconds,
        "history": history,
        **{k: v for k, v in final.items() if k.startswith("test_")},
    }
    _write_json(os.path.join(out, METRICS), metrics)
    sizes = tuple(config["network"]["sizes"])
    _plot(
        os.path.join(out, CURVES),
        history,
        metric,
        f"{settings['dataset']}: {sizes}, {settings['optimizer']}",
    )
    name = {"accuracy": "test accuracy", "r2": "test R^2"}[metric]
    print(
        f"{settings['dataset']}: {name} {final[f'test_{metric}']:.4f} after "
        f"{settings['epochs']} epochs in {seconds:.1f} s -> {out}"
    )


# --- jaxnn verify -------------------------------------------------------------------------


def _add_verify(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="check the hand-derived gradients against jax.grad",
        description="Run the verification matrix and print its table; exit 1 if a row fails.",
    )
    p.add_argument("--json", metavar="PATH", help="also write the rows to PATH as JSON")
    p.set_defaults(handler=_verify)


def _verify(args) -> int:
    from jaxnn import verify  # run_matrix enables float64 for its own run

    if args.json and os.path.exists(args.json):
        raise UsageError(f"{args.json} already exists; choose another --json path")
    rows = verify.run_matrix()
    print(verify.format_table(rows))
    if args.json:
        text = json.dumps(_jsonable(rows), indent=2, default=_json_default) + "\n"
        _write_atomic(args.json, lambda f: f.write(text))
    return 0 if all(row["ok"] for row in rows) else 1


def _json_default(x):
    """numpy and JAX scalars and arrays as JSON numbers and lists; anything else as text."""
    try:
        import numpy as np

        value = np.asarray(x).tolist()
        return _jsonable(value)
    except (TypeError, ValueError):
        return str(x)


# --- the parser ----------------------------------------------------------------------------


def _add_bench(subparsers) -> None:
    from jaxnn import bench

    p = subparsers.add_parser(
        "bench",
        help="time the hand-derived step beside jax.grad, PyTorch, NumPy and the matmul limit",
        description=bench.__doc__.splitlines()[0],
    )
    bench.parser(p)
    p.set_defaults(handler=_bench)


def _bench(args) -> int:
    from jaxnn import bench

    print(bench.run_from_args(args), end="")
    return 0


SUBCOMMANDS = [_add_train, _add_verify, _add_bench]


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxnn",
        description="Dense neural networks in JAX with hand-derived backpropagation.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit status (the console script exits with it)."""
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except RunFailed as e:
        print(f"jaxnn: error: {' '.join(str(e).split())}", file=sys.stderr)
        return 1
    except (UsageError, ValueError, ImportError) as e:
        message = " ".join(str(e).split())  # one line
        print(f"jaxnn: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("jaxnn: interrupted", file=sys.stderr)
        return 130
