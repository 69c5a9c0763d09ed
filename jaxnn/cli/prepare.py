"""``jaxnn train``'s data: a bundled dataset or a file of the user's own, split into
training, validation and test parts, standardised, and described for ``model.json``.

A file of the user's own (``jaxnn.tabular``): the test part is ``--test-fraction`` of
the examples (stratified: of every class, or of every decile of a regression target),
drawn with ``--seed``, or the labelled file ``--test``. The features are standardised
with the mean and std of the rest (std 1 for a feature constant there), and so is a
regression's target. Two classes get one sigmoid unit with binary cross-entropy, more
get softmax with cross-entropy; a regression a linear unit with MSE.

A bundled dataset (``jaxnn.data``) is split and standardised by its loader (the split
drawn with ``--seed``; mnist keeps its own), which records how
(``Dataset.preprocessing``).

Either way, ``--validation-fraction`` of the training part becomes the validation part,
stratified and drawn with ``--seed``, after the standardisation. Every problem is
raised before anything is written: a ``jaxnn.tabular.TableError`` (one line naming the
file, the column and the row) or a ``UsageError``. This module never prints.
"""

import os
from typing import Any, NamedTuple

import numpy as np

from jaxnn.cli.common import UsageError

__all__ = ["Parts", "RunData", "learning_rate", "load", "schedule_config"]

# warmup-cosine warms up over this fraction of the run's steps (at least one step).
WARMUP_FRACTION = 0.05


class Parts(NamedTuple):
    """The examples ``fit`` trains on, in columns: ``(n, m)`` each; the validation part
    None where there is none."""

    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    X_val: np.ndarray | None = None
    Y_val: np.ndarray | None = None


class RunData(NamedTuple):
    """A run's data, ready: the parts, the head, and what ``model.json`` says of them."""

    parts: Parts
    dataset: Any  # a jaxnn.data.Dataset (the training and test parts, and the head)
    preprocessing: Any  # a jaxnn.data.Preprocessing
    source: dict  # model.json's "data"
    split: dict  # model.json's "split"


def load(settings: dict) -> RunData:
    """The run's data from its settings (``jaxnn.cli.settings``), checked."""
    import jax
    import jax.numpy as jnp

    if settings["dataset"] is None:
        dataset, source, split = _own_file(settings, jax.dtypes.canonicalize_dtype(jnp.float64))
    else:
        dataset, source, split = _bundled(settings)
    parts, m_train, m_val = _validation_split(dataset, settings)
    split |= {"m_train": m_train, "m_val": m_val, "m_test": int(np.shape(dataset.X_test)[1])}
    return RunData(parts, dataset, dataset.preprocessing, source, split)


def _bundled(settings: dict):
    from jaxnn import data

    name = settings["dataset"]
    if name == "mnist":
        dataset = data.load(name, settings["data"])
        split = {"seed": None, "test_fraction": None}  # its own test set
        source = {"dataset": name, "scaling": "one mean and std over all training pixels"}
    else:
        kwargs = {"test_fraction": settings["test_fraction"], "seed": settings["seed"]}
        dataset = data.load(name, **kwargs)
        split = dict(kwargs)
        scaling = "one mean and std over all pixels" if name == "digits" else "per feature"
        source = {"dataset": name, "scaling": scaling}
    split |= {"validation_fraction": settings["validation_fraction"], "test_file": None}
    return dataset, source, split


def _own_file(settings: dict, dtype):
    """A Dataset of the user's file, the test part split off or read, standardised."""
    from jaxnn import data, losses, tabular

    table = tabular.read_table(settings["data"], settings["target"], settings["task"])
    if settings["test"] is not None:
        X_test, y_test = tabular.read_labelled(
            settings["test"], table.feature_names, table.target, table.task, table.classes
        )
        X, y = table.X, table.y
    else:
        train, test = tabular.split_indices(table, settings["test_fraction"], settings["seed"])
        X, y, X_test, y_test = table.X[train], table.y[train], table.X[test], table.y[test]
    features = tabular.Standardizer.fit(X)
    if table.task == "regression":
        target = tabular.Standardizer.fit(y)
        out = losses.head("linear", "mse")
        Y, Y_test = ((target.apply(t)[None, :]) for t in (y, y_test))
        scale = {"target_mean": float(target.mean), "target_std": float(target.std)}
    elif len(table.classes) == 2:  # one sigmoid unit: p = P(classes[1])
        out = losses.head("sigmoid", "binary_cross_entropy")
        Y, Y_test = (np.asarray(t, np.float64)[None, :] for t in (y, y_test))
        scale = {}
    else:
        out = losses.head("softmax", "cross_entropy")
        Y, Y_test = (data.one_hot(t, len(table.classes)) for t in (y, y_test))
        scale = {}
    preprocessing = data.Preprocessing(
        table.feature_names, features.mean, features.std, table.target, table.classes, **scale
    )
    X, X_test = features.apply(X).T, features.apply(X_test).T  # columns: the seeds' layout
    arrays = [np.asarray(a, dtype) for a in (X, Y, X_test, Y_test)]
    name = os.path.basename(settings["data"])
    dataset = data.Dataset(*arrays, out.task, out.activation, out.loss, name, preprocessing)
    source = {"file": settings["data"], "test_file": settings["test"]}
    split = {
        "seed": settings["seed"],
        "test_fraction": None if settings["test"] is not None else settings["test_fraction"],
        "validation_fraction": settings["validation_fraction"],
        "test_file": settings["test"],
    }
    return dataset, source, split


def _strata(Y: np.ndarray, task: str) -> np.ndarray:
    """What a split of ``Y`` (columns) stratifies on: the class, or the target's decile."""
    from jaxnn import data

    if task == "regression":
        return data.target_deciles(Y[0])
    return Y[0] if Y.shape[0] == 1 else Y.argmax(axis=0)


def _validation_split(dataset, settings: dict) -> tuple[Parts, int, int]:
    """The parts, ``--validation-fraction`` of the training part held out (stratified,
    drawn with ``--seed``); and the sizes of the two."""
    from jaxnn import data

    X, Y = np.asarray(dataset.X_train), np.asarray(dataset.Y_train)
    fraction = settings["validation_fraction"]
    if not fraction:
        return Parts(X, Y, dataset.X_test, dataset.Y_test), X.shape[1], 0
    fit, val = data.stratified_split(_strata(Y, dataset.task), fraction, settings["seed"])
    for part, idx in (("validation", val), ("training", fit)):
        if len(idx) == 0:
            raise UsageError(
                f"--validation-fraction {fraction} leaves the {part} part empty "
                f"({X.shape[1]} training examples); change it"
            )
    parts = Parts(X[:, fit], Y[:, fit], dataset.X_test, dataset.Y_test, X[:, val], Y[:, val])
    return parts, len(fit), len(val)


def schedule_config(name: str, learning_rate: float, epochs: int, steps_per_epoch: int) -> dict:
    """config.json's record of the learning rate's schedule over the run's steps (one
    step per batch, ``epochs * steps_per_epoch`` in all)."""
    steps = epochs * steps_per_epoch
    config = {"name": name, "peak_value": learning_rate, "steps": steps}
    if name == "warmup-cosine":
        config["warmup_steps"] = max(1, round(WARMUP_FRACTION * steps))
    if name != "constant":
        config["end_value"] = 0.0
    return config


def learning_rate(config: dict):
    """The learning rate ``schedule_config`` describes: a float, or an optax schedule of
    the update count.

    cosine: ``optax.cosine_decay_schedule`` from the peak down to 0 at the last step;
    warmup-cosine: ``optax.warmup_cosine_decay_schedule``, linearly up from 0 over
    ``warmup_steps`` (5% of the steps), then cosine down to 0 at the last step.
    """
    import optax

    name, peak, steps = config["name"], config["peak_value"], config["steps"]
    if name == "constant":
        return peak
    if name == "cosine":
        return optax.cosine_decay_schedule(peak, decay_steps=max(steps, 1), alpha=0.0)
    warmup = config["warmup_steps"]
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=peak,
        warmup_steps=warmup,
        decay_steps=max(steps, warmup + 1),
        end_value=config["end_value"],
    )
