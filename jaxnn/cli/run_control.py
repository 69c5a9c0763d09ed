"""What keeps a ``jaxnn train`` run safe and quick: signals, checkpoint saving, imports.

``StopOnSignal`` turns SIGINT and SIGTERM into "stop after this epoch";
``EpochSaver``, called after every epoch, saves a checkpoint when
``jaxnn.checkpoint.save_due`` says so, on a signal, or when early stopping ends the
run, and keeps the best epoch's checkpoint; ``prefetch`` loads the modules a run needs
later in a background thread. This module never prints.
"""

import importlib
import math
import os
import signal
import threading
import time
from typing import Any, NamedTuple

from jaxnn.cli.common import jsonable
from jaxnn.cli.settings import CHECKPOINTS

__all__ = [
    "PREFETCH",
    "BestEpoch",
    "EpochSaver",
    "StopOnSignal",
    "prefetch",
]


class StopOnSignal:
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


class BestEpoch(NamedTuple):
    """The epoch of the lowest validation cost so far, with what its checkpoint holds
    (None once saved, or when resumed: its checkpoint is on disk)."""

    epoch: int  # 0: none yet
    cost: float
    params: Any = None
    opt_state: Any = None
    seconds: float = 0.0


class EpochSaver:
    """``fit``'s checkpointing callback: saves when ``save_due`` says so, when forced, or
    after the epoch that ends the run by early stopping.

    With a validation part it follows the best epoch (the lowest validation cost, the
    first if tied, as ``fit`` picks it) and keeps its checkpoint whatever the newest 3
    would drop (``Checkpoints.keep``). That epoch may have passed unsaved: at the next
    save it is saved first, from the params and optimizer state held since, with the
    history up to it. Every save then holds the best epoch of its history, so resuming
    from any restores ``fit``'s ``best_params`` bit for bit.

    The run's ``Checkpoints`` open at the first save (orbax loads meanwhile, see
    ``prefetch``), or at once with ``opened=True`` (to resume); closed on exit,
    after the last save is complete.
    """

    def __init__(self, job, every: float, opened: bool = False):
        self.job, self.every = job, every
        self.directory = os.path.join(job.out, CHECKPOINTS)
        self.clock = lambda: 0.0  # the run's training seconds, set by train_with_progress
        self.last = time.monotonic()
        self.patience = job.settings["patience"]
        self.best = BestEpoch(0, math.inf)
        self.saved_best = 0  # the best epoch whose checkpoint is saved (0: none)
        self._ckpts = None
        if opened:
            self.ckpts  # noqa: B018 (opens them)

    @property
    def ckpts(self):
        if self._ckpts is None:
            from jaxnn.checkpoint import Checkpoints

            self._ckpts = Checkpoints(self.directory)
        return self._ckpts

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self._ckpts is not None:
            self._ckpts.close()

    def due(self, epoch: int) -> bool:
        """Whether ``save_due`` asks for a save after ``epoch``, by this process's clock."""
        from jaxnn.checkpoint import save_due

        elapsed = time.monotonic() - self.last
        return save_due(epoch, self.job.settings["epochs"], elapsed, self.every)

    def stops(self, epoch: int) -> bool:
        """Whether early stopping ends the run after ``epoch``: ``patience`` epochs have
        passed since the best one (as ``fit`` decides it)."""
        best = self.best.epoch
        return self.patience is not None and best > 0 and epoch - best >= self.patience

    def resumed(self, epoch: int, cost: float) -> None:
        """The run resumes with ``epoch`` its best so far (its checkpoint saved): keep it."""
        self.best = BestEpoch(epoch, cost)
        self.saved_best = epoch
        self.ckpts.keep(epoch)

    def __call__(self, epoch, params, opt_state, history, force=False) -> None:
        """Follow the best epoch; save after ``epoch`` if forced, ``due``, or stopping
        early. On several processes every process must decide alike (orbax's saves are
        collective): decide together and force (the rest is the same on every one)."""
        now = time.monotonic()
        cost = history[-1].get("val_cost")
        if cost is not None and cost < self.best.cost:
            self.best = BestEpoch(epoch, cost, params, opt_state, self.clock())
        if force or self.due(epoch) or self.stops(epoch):
            self._save_best(epoch, history)
            meta = {"history": history, "seconds": self.clock()}
            self.ckpts.save(epoch, params, opt_state, self.job.key, jsonable(meta))
            self.last = now

    def _save_best(self, epoch: int, history: list) -> None:
        """Before the save of ``epoch``: keep the best epoch, saving it first if it passed
        unsaved. It is newer than every saved epoch, so the saves stay in order."""
        best = self.best
        if best.epoch == 0 or best.epoch == self.saved_best:
            return
        self.ckpts.keep(best.epoch)
        if best.epoch != epoch:
            meta = {"history": history[: best.epoch], "seconds": best.seconds}
            self.ckpts.save(best.epoch, best.params, best.opt_state, self.job.key, jsonable(meta))
        self.saved_best = best.epoch
        self.best = best._replace(params=None, opt_state=None)  # on disk now

    def kept_message(self) -> str:
        """Which checkpoint a run that failed keeps, once every save is complete."""
        kept = None
        if self._ckpts is not None:
            self._ckpts.wait()
            kept = self._ckpts.latest_epoch()
        if kept is None:
            return "no checkpoint was saved before"
        return f"kept the last good checkpoint, epoch {kept}, in {self.directory}"


# Modules the run needs during training, loaded in a background thread while it loads
# data and compiles (orbax takes about 0.4 s to import). Not matplotlib, only needed for
# curves.png after the last epoch: imported beside the epochs, it took a core from them
# (warm runs, default network, 6 interleaved rounds: training 0.94 s with it, 0.76 s
# without; process wall 2.34 s and 2.57 s).
# scipy.linalg first: JAX imports it (0.3-0.5 s) to register LAPACK when it lowers a
# program kept by jaxnn.program_cache (jax.export's call lowering initialises the backends'
# kernels), which is on a warm run's path to its first epoch.
PREFETCH = ("scipy.linalg", "orbax.checkpoint")


def prefetch(modules) -> threading.Thread:
    """Import ``modules`` in a background thread; the run's own imports of them wait for it."""

    def load():
        for name in modules:
            try:
                importlib.import_module(name)
            except Exception:  # reported where the module is used, by the run's own import
                pass

    thread = threading.Thread(target=load, name="jaxnn-prefetch", daemon=True)
    thread.start()
    return thread
