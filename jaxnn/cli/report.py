"""The report of a ``jaxnn train`` run: metrics.json, curves.png and its lines of text."""

import os
import shlex
import signal

from jaxnn.cli import cluster
from jaxnn.cli.common import jsonable, write_atomic, write_json
from jaxnn.cli.curves import METRIC_NAMES, Plotter, draw
from jaxnn.cli.settings import CURVES, METRICS

__all__ = [
    "complete_message",
    "interrupted_message",
    "plot",
    "resume_flags",
    "stopping_message",
    "summary_line",
    "write_report",
]


def stopping_message(name: str) -> str:
    """The line printed on a first SIGINT or SIGTERM."""
    return f"jaxnn: {name}: stopping once this epoch's checkpoint is saved (again: stop at once)"


def resume_flags(args) -> str:
    """The flags that resume the run besides ``--resume --out``: devices, processes."""
    flags = f" --devices {args.devices}" if args.devices != 1 else ""
    if args.distributed:
        flags += " --distributed (on every process)"
    elif cluster.wanted(args):
        flags += (
            f" --coordinator {args.coordinator} --num-processes {args.num_processes} "
            "--process-id I (on every process I)"
        )
    return flags


def interrupted_message(job, signum: int | None, done: int, flags: str = "") -> str:
    """The line of a run stopped by ``signum`` (None: a signal to another process)."""
    resume = f"jaxnn train --resume --out {shlex.quote(job.out)}{flags}"
    how = signal.Signals(signum).name if signum else "a signal to another process"
    return (
        f"jaxnn: interrupted by {how} after epoch {done} of "
        f"{job.settings['epochs']}; its checkpoint is saved, and metrics.json and curves.png "
        f"show the epochs done; resume with: {resume}"
    )


def selection(job, history: list) -> tuple[dict, int | None, bool]:
    """The history record of the epoch the model holds (``jaxnn.load_run``'s default: the
    best on the validation part, else the last), the best epoch (None without a
    validation part), and whether early stopping ended the run."""
    from jaxnn.model import best_epoch

    best = best_epoch(history)
    if best is None:
        return history[-1], None, False
    patience = job.settings["patience"]
    stopped = patience is not None and history[-1]["epoch"] - best >= patience
    return history[best - 1], best, stopped


def write_report(
    job,
    history: list,
    seconds: float,
    devices: int,
    finished: bool,
    plotter: Plotter | None = None,
) -> None:
    """Write metrics.json and curves.png for the epochs in ``history`` (curves.png drawn by
    ``plotter``'s process where one was started: ``jaxnn.cli.curves``).

    metrics.json's top-level ``test_*`` are those of the epoch the model holds (the best
    on the validation part, with one: ``best_epoch``; else the last).
    """
    from jaxnn.cli import cpu_threads

    if not history:
        return
    s, config, model = job.settings, job.config, job.model
    chosen, best, stopped = selection(job, history)
    metrics = {
        "dataset": s["dataset"],
        "data": model["data"],
        "task": job.task,
        "target": {k: v for k, v in model["target"].items() if k != "classes"},
        "classes": model["target"].get("classes"),
        "features": model["features"]["names"],
        "split": model["split"],
        "network": config["network"],
        "optimizer": config["optimizer"],
        "schedule": config.get("schedule"),
        "weight_decay": s["weight_decay"],
        "patience": s["patience"],
        "batch_size": s["batch_size"],
        "seed": s["seed"],
        "gradients": s["gradients"],
        "epochs": s["epochs"],
        "epochs_done": history[-1]["epoch"],
        "finished": finished,
        "best_epoch": best,
        "stopped_early": stopped,
        "devices": devices,
        "cpu_threads": cpu_threads.pool_threads(),  # XLA's CPU pool (0: not known here)
        "seconds": seconds,
        "history": history,
        **{k: v for k, v in chosen.items() if k.startswith("test_")},
    }
    write_json(os.path.join(job.out, METRICS), metrics)
    sizes = tuple(config["network"]["sizes"])
    title = f"{job.name}: {sizes}, {s['optimizer']}"
    if not finished:
        title += f" (unfinished: {history[-1]['epoch']} of {s['epochs']} epochs)"
    plot(os.path.join(job.out, CURVES), history, job.metric, title, best, plotter)


def summary_line(job, history: list, seconds: float) -> str:
    """The line printed at the end of a finished run: the test metric of the epoch the
    model holds, and, with a validation part, which epoch that is."""
    chosen, best, stopped = selection(job, history)
    value = chosen[f"test_{job.metric}"]
    line = f"{job.name}: test {METRIC_NAMES[job.metric]} {value:.4f}"
    done = history[-1]["epoch"]
    if best is not None:
        line += f" at its best epoch on validation, {best} of {done}"
        if stopped:
            line += " (stopped early)"
    else:
        line += f" after {done} epochs"
    return line + f" in {seconds:.1f} s -> {job.out}"


def complete_message(job, history: list, written: list) -> str:
    """The line of ``--resume`` on a run that was already complete."""
    wrote = f"; wrote the missing {' and '.join(written)}" if written else ""
    return f"{job.out}: already complete, {history[-1]['epoch']} epochs{wrote}"


def plot(
    path: str,
    history: list,
    metric: str,
    title: str,
    best: int | None = None,
    plotter: Plotter | None = None,
) -> None:
    """Write curves.png (``jaxnn.cli.curves.draw``), drawn by ``plotter``'s process if
    one was started, else here."""
    history = jsonable(history)
    drawn_by = plotter.draw if plotter else draw
    png = drawn_by(history, metric, title, best)
    write_atomic(path, lambda f: f.write(png), mode="wb")
