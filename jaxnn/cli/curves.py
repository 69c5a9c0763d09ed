"""curves.png, drawn beside the training in a process of its own.

Importing matplotlib and drawing the first figure take about 0.55 s, a sixth of a warm
``jaxnn train`` on the default task, all of it after the last epoch. ``Plotter`` starts
``python -I curves.py`` at the first epoch: that process imports matplotlib and draws a
figure to warm its caches on the other core while the epochs run, then waits; the report
sends it the history as one JSON line and gets the PNG's bytes back (about 0.15 s). If
that process cannot start, fails or sends no PNG, the command draws in its own process,
as before. A separate process and not a thread: an import holds the GIL, and beside the
epochs' dispatch a thread slowed them (BENCHMARKS.md).

This module imports nothing from jaxnn (run by its path in isolated mode, ``-I``, it
must not import the package, whose ``import jax`` alone takes a second).
"""

import io
import json
import math
import os
import signal
import subprocess
import sys

__all__ = ["METRIC_NAMES", "Plotter", "draw"]

METRIC_NAMES = {"accuracy": "accuracy", "r2": "R^2"}


def draw(history: list, metric: str, title: str, best: int | None = None) -> bytes:
    """curves.png's bytes: the costs (train, validation, test) and the metric (train,
    validation, test) per epoch; with ``best``, a line at the best epoch. The training
    set's cost and metric are running ones, over the epoch's batches, each before its
    update (``jaxnn.train.fit``); the others are the params' after the epoch."""
    from matplotlib.figure import Figure  # Agg canvas; pyplot's global state never touched

    epochs = [r["epoch"] for r in history]
    series = lambda name: [math.nan if r.get(name) is None else r[name] for r in history]
    has = lambda name: any(r.get(name) is not None for r in history)
    fig = Figure(figsize=(9, 3.6))  # fixed margins: "constrained" layout doubled the time
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.14, top=0.82, wspace=0.25)
    ax_cost, ax_metric = fig.subplots(1, 2)
    ax_cost.plot(epochs, series("train_cost"), label="train (mean of batches)")
    label = METRIC_NAMES[metric]
    if has(f"train_{metric}"):
        ax_metric.plot(
            epochs, series(f"train_{metric}"), color="C0", label="train (running, over batches)"
        )
    if has("val_cost"):
        ax_cost.plot(epochs, series("val_cost"), color="C1", label="validation")
        ax_metric.plot(epochs, series(f"val_{metric}"), color="C1", label="validation")
    ax_cost.plot(epochs, series("test_cost"), color="C2", label="test")
    ax_metric.plot(epochs, series(f"test_{metric}"), color="C2", label="test")
    if best is not None:
        for ax in (ax_cost, ax_metric):
            ax.axvline(best, color="0.4", linestyle="--", linewidth=1, label=f"best: {best}")
    ax_cost.set(xlabel="epoch", ylabel="cost", yscale="log", title="cost")
    ax_metric.set(xlabel="epoch", ylabel=label, title=label)
    ax_cost.legend()
    ax_metric.legend()
    fig.suptitle(title)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


_WARM_UP = [
    {"epoch": 1, "train_cost": 1.0, "test_cost": 1.0, "test_accuracy": 0.5},
    {"epoch": 2, "train_cost": 0.5, "test_cost": 0.6, "test_accuracy": 0.9},
]


def _serve() -> None:
    """The drawing process: warm up, read one request from stdin, write the PNG to stdout."""
    # Ctrl-C reaches the whole process group; the command decides when to stop, and
    # still asks for its curves after a first SIGINT.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if hasattr(os, "nice"):
        os.nice(10)  # this process's own priority: the epochs come first on a busy machine
    draw(_WARM_UP, "accuracy", "warm-up", best=1)  # imports, fonts, Agg's caches
    line = sys.stdin.readline()
    if not line:  # the command ended without a report
        return
    request = json.loads(line)
    sys.stdout.buffer.write(draw(**request))
    sys.stdout.buffer.flush()


class Plotter:
    """The drawing process of one run: ``start()`` it at the first epoch, then ``draw``.

    A context manager: leaving it ends the process if it is still running.
    """

    def __init__(self) -> None:
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        """Start the drawing process (once; nothing if it cannot start)."""
        if self.process is not None:
            return
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", os.path.abspath(__file__)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            self.process = None

    def draw(self, history: list, metric: str, title: str, best: int | None = None) -> bytes:
        """curves.png's bytes, from the drawing process if it answers, else drawn here."""
        process, self.process = self.process, None
        if process is not None:
            request = {"history": history, "metric": metric, "title": title, "best": best}
            try:
                png, _ = process.communicate(json.dumps(request).encode() + b"\n", timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                with process:  # closes its pipes and waits
                    process.kill()
                png = b""
            if process.returncode == 0 and png.startswith(b"\x89PNG\r\n\x1a\n"):
                return png
        return draw(history, metric, title, best)

    def close(self) -> None:
        """End the drawing process if it still runs (no report was drawn)."""
        if self.process is not None:
            with self.process:  # closes its pipes and waits
                self.process.kill()
            self.process = None

    def __enter__(self) -> "Plotter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


if __name__ == "__main__":
    _serve()
