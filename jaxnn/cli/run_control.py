"""What keeps a ``jaxnn train`` run safe and quick: signals, checkpoint saving, imports.

``StopOnSignal`` turns SIGINT and SIGTERM into "stop after this epoch";
``EpochSaver``, called after every epoch, saves a checkpoint when
``jaxnn.checkpoint.save_due`` says so or on a signal; ``prefetch`` loads the
modules a run needs later in a background thread. This module never prints.
"""

import importlib
import os
import signal
import threading
import time

from jaxnn.cli.common import jsonable
from jaxnn.cli.settings import CHECKPOINTS


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


class EpochSaver:
    """``fit``'s checkpointing callback: saves when ``save_due`` says so, or when forced.

    The run's ``Checkpoints`` open at the first save (orbax loads meanwhile, see
    ``prefetch``), or at once with ``opened=True`` (to resume); closed on exit,
    after the last save is complete.
    """

    def __init__(self, job, every: float, opened: bool = False):
        self.job, self.every = job, every
        self.directory = os.path.join(job.out, CHECKPOINTS)
        self.clock = lambda: 0.0  # the run's training seconds, set by train_with_progress
        self.last = time.monotonic()
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

    def __call__(self, epoch, params, opt_state, history, force=False) -> None:
        """Save after ``epoch`` if forced or ``due``. On several processes every process
        must decide alike (orbax's saves are collective): decide together and force."""
        now = time.monotonic()
        if force or self.due(epoch):
            meta = {"history": history, "seconds": self.clock()}
            self.ckpts.save(epoch, params, opt_state, self.job.key, jsonable(meta))
            self.last = now

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
PREFETCH = ("orbax.checkpoint",)


def prefetch(modules) -> threading.Thread:
    """Import ``modules`` in a background thread; the run's own imports of them wait for it."""

    def load():
        for name in modules:
            try:
                importlib.import_module(name)
            except ImportError:  # reported where the module is used
                pass

    thread = threading.Thread(target=load, name="jaxnn-prefetch", daemon=True)
    thread.start()
    return thread
