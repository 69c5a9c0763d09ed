"""``jaxnn train`` on a run directory that holds a run: is it the same run, where does
it resume, is it over.

A resumed run must be the run that was started: config.json's settings and network
(``jaxnn.cli.settings``), and model.json's data (the features, their statistics, the
target and the split, computed afresh from the data). It resumes from its newest
checkpoint, with the best epoch's params for ``fit``'s ``best_params`` when it has a
validation part; a run already over (every epoch done, or stopped early) is only
reported. This module never prints.
"""

import json
import os

from jaxnn.cli.common import UsageError, jsonable
from jaxnn.cli.settings import MODEL

__all__ = ["check_history", "check_model", "is_finished", "resume_point"]


def is_finished(job, history: list) -> bool:
    """Whether the run is over: every epoch done, or stopped early (``--patience``)."""
    from jaxnn.model import best_epoch

    done, patience = history[-1]["epoch"], job.settings["patience"]
    best = best_epoch(history)
    return done >= job.settings["epochs"] or (
        patience is not None and best is not None and done - best >= patience
    )


def check_model(out: str, record: dict) -> None:
    """Resuming: raise UsageError unless the run's model.json (if written) describes the
    same model as the data now gives: same features, statistics, target and split."""
    path = os.path.join(out, MODEL)
    if not os.path.isfile(path):
        return
    try:
        with open(path) as f:
            saved = json.load(f)
    except (OSError, ValueError) as e:
        raise UsageError(f"--resume: cannot read {path}: {e}") from None
    now = json.loads(json.dumps(jsonable(record)))
    for key in ("task", "features", "target", "split"):  # the network: config.json's check
        if key == "split":  # the test file may have moved
            same = {**saved.get(key, {}), "test_file": None} == {**now[key], "test_file": None}
        else:
            same = saved.get(key) == now[key]
        if not same:
            raise UsageError(
                f"--resume: the data is not what the run in {out} was trained on: {MODEL}'s "
                f"{key!r} differs from what it gives now (was the file changed?)"
            )


def resume_point(saver, job) -> dict:
    """``fit``'s keyword arguments to continue the run, and its ``seconds`` so far; with
    ``"complete": True`` for a run already over (every epoch done, or stopped early).

    A run killed before its first save has no checkpoint: it starts over. With a
    validation part the best epoch's checkpoint gives ``best_params``, and the saver
    keeps it.
    """
    ckpts = saver.ckpts
    if ckpts.latest_epoch() is None:
        return {}
    from jaxnn import train
    from jaxnn.model import best_epoch

    template, template_state = train.make_init(job.net, job.optimizer)(job.key)
    restored = ckpts.restore(template, template_state, job.key)
    history = restored.meta.get("history")
    check_history(history, restored.epoch, job.metric, ckpts.directory)
    seconds = restored.meta.get("seconds")
    start = {
        "params": restored.params,
        "opt_state": restored.opt_state,
        "start_epoch": restored.epoch,
        "history": history,
        "seconds": float(seconds) if isinstance(seconds, (int, float)) else 0.0,
    }
    if restored.epoch > job.settings["epochs"]:
        raise UsageError(
            f"--resume: {job.out} has {restored.epoch} epochs already, more than --epochs "
            f"{job.settings['epochs']} (the total)"
        )
    complete = is_finished(job, history)
    best = best_epoch(history)
    if best is not None and not complete:
        saver.resumed(best, history[best - 1]["val_cost"])
        if best != restored.epoch:
            restored = ckpts.restore(template, template_state, job.key, epoch=best)
        start["best_params"] = restored.params
    if complete:
        start["complete"] = True
    return start


def check_history(history, epoch: int, metric: str, where: str) -> None:
    """Raise UsageError unless ``history`` has a valid record for each epoch 1..epoch."""
    keys = {"epoch", "train_cost", "test_cost", f"test_{metric}"}
    if not (
        isinstance(history, list)
        and all(isinstance(r, dict) and keys <= set(r) for r in history)
        and [r["epoch"] for r in history] == list(range(1, epoch + 1))
    ):
        raise UsageError(
            f"--resume: the checkpoint of epoch {epoch} in {where} has no "
            f"valid history (a record per epoch 1..{epoch}, each with "
            f"{', '.join(sorted(keys))})"
        )
