"""A finished ``jaxnn train`` run as a model: ``load_run(DIR)``, then ``predict``.

The run directory is the model: ``model.json`` says what the network takes and gives,
and ``checkpoints/`` hold its parameters (orbax: arrays and JSON, no pickle).
``load_run`` reads both, building the templates the checkpoint is restored into from
``model.json`` alone.

``model.json`` (``"format": "jaxnn-model"``, ``"version": 1``), written by ``jaxnn
train`` before the first epoch::

    {
      "format": "jaxnn-model", "version": 1,
      "task": "classification",                       # or "regression"
      "network": {"sizes": [13, 16, 3], "activations": ["relu", "softmax"],
                  "loss": "cross_entropy"},
      "dtype": "float32",                             # the parameters'
      "optimizer": {"name": "adam", "learning_rate": 0.001, ...},  # its state's shape
      "features": {"names": [...], "mean": [...], "std": [...]},   # in the network's order
      "target": {"name": "cultivar", "classes": ["a", "b", "c"]},
             # or, for regression, {"name": ..., "mean": 152.1, "std": 77.1}
      "data": {"file": "/abs/wine.csv", "test_file": null},
             # or {"dataset": "digits", "scaling": "one mean and std over all pixels"}
      "split": {"seed": 0, "test_fraction": 0.2, "validation_fraction": 0.1,
                "m_train": 128, "m_val": 14, "m_test": 36, "test_file": null},
      "selects": "best",                              # or "last"; see below
      "checkpoints": "checkpoints"
    }

The network computes on standardised features: feature j of a raw row x enters as
``(x_j - mean_j) / std_j`` (std is 1 for a feature constant in the training part). A
classifier's output unit i (softmax), or its one sigmoid unit's p = P(classes[1]),
names ``classes[i]``, the class names in sorted order (for the bundled datasets, in
their label order); a regression's output is ``y_hat``, and its prediction on the
target's own scale ``y_hat * std + mean``. ``m_train`` counts the examples trained on,
the validation part (``m_val``) not included; the statistics come from the training
and validation parts together, the part not held out for testing.

Which epoch: ``"selects": "best"`` (a run with a validation part): the epoch of the
lowest validation cost among the epochs of the newest checkpoint's history (``jaxnn
train`` keeps that epoch's checkpoint whatever its age); ``"last"``: the newest saved
epoch. ``load_run(DIR, epoch=E)`` takes epoch E, if saved.
"""

import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

if TYPE_CHECKING:
    from numpy.typing import DTypeLike

    from jaxnn.data import Preprocessing
    from jaxnn.network import Network

__all__ = [
    "FORMAT",
    "MODEL_FILE",
    "VERSION",
    "Model",
    "best_epoch",
    "load_run",
    "model_record",
    "read_record",
]

FORMAT, VERSION = "jaxnn-model", 1
MODEL_FILE = "model.json"
_CHECKPOINTS = "checkpoints"
_KEYS = ("task", "network", "dtype", "optimizer", "features", "target", "split", "selects")


def model_record(
    net: "Network",
    dtype: "DTypeLike",
    optimizer: dict,
    preprocessing: "Preprocessing",
    task: str,
    data: dict,
    split: dict,
) -> dict:
    """``model.json``'s content (see the module docstring).

    Args:
      net: the ``jaxnn.Network``.
      dtype: the parameters' dtype.
      optimizer: config.json's record of the optimizer (its ``name`` gives the state's
        shape).
      preprocessing: a ``jaxnn.data.Preprocessing``: the features' names, means and
        stds; the target's name, and its classes or its mean and std.
      task: ``"classification"`` or ``"regression"``.
      data: where the data came from: ``{"file", "test_file"}`` or ``{"dataset", ...}``.
      split: ``seed``, ``test_fraction``, ``validation_fraction``, ``m_train``,
        ``m_val``, ``m_test``, ``test_file``.
    """
    p = preprocessing
    target: dict[str, Any] = {"name": p.target}
    if task == "classification":
        target["classes"] = list(p.classes)
    else:
        target["mean"], target["std"] = float(p.target_mean), float(p.target_std)
    network = {"sizes": list(net.sizes), "activations": list(net.activations), "loss": net.loss}
    return {
        "format": FORMAT,
        "version": VERSION,
        "task": task,
        "network": network,
        "dtype": np.dtype(dtype).name,
        "optimizer": dict(optimizer),
        "features": {
            "names": list(p.feature_names),
            "mean": np.asarray(p.feature_mean, np.float64).tolist(),
            "std": np.asarray(p.feature_std, np.float64).tolist(),
        },
        "target": target,
        "data": dict(data),
        "split": dict(split),
        "selects": "best" if split.get("m_val") else "last",
        "checkpoints": _CHECKPOINTS,
    }


def read_record(directory: str | os.PathLike) -> dict:
    """The ``model.json`` of the run in ``directory``, checked; a ValueError says what is
    wrong (no run, another format, a newer version, a field missing)."""
    directory = os.fspath(directory)
    path = os.path.join(directory, MODEL_FILE)
    if not os.path.isfile(path):
        what = "is not a directory" if not os.path.isdir(directory) else f"holds no {MODEL_FILE}"
        raise ValueError(
            f"{directory} {what}: not a jaxnn run (jaxnn train writes {MODEL_FILE} before its "
            "first epoch)"
        )
    try:
        with open(path) as f:
            record = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(f"{path} cannot be read: {e}") from None
    if not isinstance(record, dict) or record.get("format") != FORMAT:
        raise ValueError(f'{path} is not a jaxnn model (no "format": "{FORMAT}")')
    if record.get("version") != VERSION:
        raise ValueError(
            f"{path} has version {record.get('version')!r}; this jaxnn reads version {VERSION}"
        )
    missing = [k for k in _KEYS if k not in record]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}")
    return record


def best_epoch(history: Sequence[dict]) -> int | None:
    """The epoch (from 1) of the lowest validation cost in ``history``, the first if tied
    (as ``jaxnn.train.fit`` picks it); None without validation costs."""
    best, cost = None, math.inf
    for record in history:
        value = record.get("val_cost")
        if value is not None and value < cost:
            best, cost = record["epoch"], value
    return best


class Model(NamedTuple):
    """A trained network with its preprocessing, as ``load_run`` restores it.

    Takes raw rows, ``(m, n_features)`` in the training file's column order, or a pandas
    DataFrame whose columns are matched by name (others ignored).

    Attributes:
      net: the ``jaxnn.Network``.
      params: its parameters, ``params[l]`` holding layer l + 1 (NumPy arrays).
      task: ``"classification"`` or ``"regression"``.
      feature_names: the features, in the network's order.
      classes: the class names, in the order of ``predict_proba``'s columns; None for
        regression.
      target: the target's name.
      features: a ``jaxnn.tabular.Standardizer``, raw features to the network's inputs.
      target_scaler: a ``Standardizer`` of the target (regression), else None.
      epoch: the epoch restored.
      directory: the run directory.
      record: ``model.json``'s content.
    """

    net: Any
    params: Any
    task: str
    feature_names: tuple[str, ...]
    classes: tuple | None
    target: str
    features: Any
    target_scaler: Any
    epoch: int
    directory: str
    record: dict

    def _inputs(self, X) -> np.ndarray:
        """Raw rows to the network's inputs, ``(n_features, m)`` in the params' dtype."""
        from jaxnn import tabular

        rows = tabular.read_features(X, self.feature_names, self.target)
        dtype = np.asarray(self.params[0]["W"]).dtype
        return np.asarray(self.features.apply(rows).T, dtype)

    def outputs(self, X) -> np.ndarray:
        """The network's output ``A^[L]`` for the rows of ``X``, one row per example:
        ``(m, n_L)``, float64."""
        import jaxnn

        return np.asarray(jaxnn.predict(self.params, self._inputs(X), self.net), np.float64).T

    def predict_proba(self, X) -> np.ndarray:
        """The class probabilities ``(m, n_classes)``, in the order of ``classes``; for
        one sigmoid unit, ``[1 - p, p]``."""
        if self.task != "classification":
            raise ValueError("predict_proba is for classification; this model is a regression")
        A = self.outputs(X)
        if A.shape[1] == 1:  # one sigmoid unit: p = P(classes[1])
            return np.concatenate([1 - A, A], axis=1)
        return A

    def predict(self, X) -> np.ndarray:
        """The predictions ``(m,)``: class names (the most probable class; for one
        sigmoid unit, p > 0.5, as the training metrics count), or values on the target's
        own scale (``(m, n_outputs)`` for several outputs)."""
        if self.task == "classification":
            A = self.outputs(X)
            index = (A[:, 0] > 0.5).astype(int) if A.shape[1] == 1 else A.argmax(axis=1)
            return np.asarray(self.classes)[index]
        values = self.target_scaler.invert(self.outputs(X))
        return values[:, 0] if values.shape[1] == 1 else values

    def export_onnx(self, path: str | os.PathLike | None = None):
        """The model as an ONNX graph (``jaxnn.onnx_export.to_onnx``: raw float32 rows in,
        ``probabilities`` or ``values`` out), written atomically to ``path`` if given."""
        from jaxnn import onnx_export

        scale = {}
        if self.task == "regression":
            scale = {"target_mean": self.target_scaler.mean, "target_std": self.target_scaler.std}
        proto = onnx_export.to_onnx(
            self.net,
            self.params,
            self.features.mean,
            self.features.std,
            task=self.task,
            feature_names=self.feature_names,
            **scale,
        )
        if path is not None:
            onnx_export.save_onnx(proto, path)
        return proto


def _templates(record: dict):
    """``(params, opt_state, key)`` shaped as the run saved them, from ``model.json``: the
    network's sizes, the params' dtype and the optimizer's name."""
    import jax
    import jax.numpy as jnp

    from jaxnn import optim
    from jaxnn.network import Network, param_types

    net = Network(**record["network"])
    dtype = np.dtype(record["dtype"])
    name = record["optimizer"]["name"]
    if name not in optim.OPTIMIZERS:
        raise ValueError(f"model.json names an unknown optimizer {name!r}")
    ptypes = param_types(net)
    # The state's shape does not depend on the learning rate; float leaves take the saved
    # dtype, which this process (without x64) may not make.
    stypes = jax.eval_shape(optim.OPTIMIZERS[name](1.0).init, ptypes)
    zeros = lambda t: np.zeros(t.shape, dtype if jnp.issubdtype(t.dtype, jnp.floating) else t.dtype)
    return net, jax.tree.map(zeros, ptypes), jax.tree.map(zeros, stypes), jax.random.key(0)


def load_run(directory: str | os.PathLike, epoch: int | None = None) -> Model:
    """The model a ``jaxnn train`` run directory holds, restored from its checkpoints.

    Args:
      directory: the run directory (``--out``).
      epoch: the epoch to restore; default: the run's selection (``model.json``'s
        ``"selects"``): the best epoch on the validation part when the run had one,
        else the newest saved epoch.

    Returns:
      A ``Model``: ``predict(X)``, ``predict_proba(X)``, ``export_onnx(path)``.

    Raises:
      ValueError: no ``model.json`` or no checkpoint there, the epoch not saved, a
        damaged checkpoint (``jaxnn.checkpoint``).

    Example:
      >>> model = jaxnn.load_run("runs/wine")
      >>> model.predict(rows)  # the class names
    """
    from jaxnn.checkpoint import Checkpoints
    from jaxnn.tabular import Standardizer

    directory = os.fspath(directory)
    record = read_record(directory)
    net, params, opt_state, key = _templates(record)
    where = os.path.join(directory, record["checkpoints"])
    if not os.path.isdir(where) or not any(n.isdigit() for n in os.listdir(where)):
        raise ValueError(
            f"{directory} has no checkpoint yet: its run saved none before it stopped; "
            f"finish it with: jaxnn train --resume --out {directory}"
        )
    with Checkpoints(where, read_only=True) as ckpts:
        restored = ckpts.restore(params, opt_state, key, epoch=epoch)
        if epoch is None and record["selects"] == "best":
            best = best_epoch(restored.meta.get("history") or [])
            if best is not None and best != restored.epoch:
                restored = ckpts.restore(params, opt_state, key, epoch=best)
    target = record["target"]
    scaler = None
    if record["task"] == "regression":
        scaler = Standardizer(np.asarray(target["mean"]), np.asarray(target["std"]))
    features = record["features"]
    return Model(
        net=net,
        params=[{k: np.asarray(v) for k, v in layer.items()} for layer in restored.params],
        task=record["task"],
        feature_names=tuple(features["names"]),
        classes=tuple(target["classes"]) if "classes" in target else None,
        target=target["name"],
        features=Standardizer(np.asarray(features["mean"]), np.asarray(features["std"])),
        target_scaler=scaler,
        epoch=restored.epoch,
        directory=directory,
        record=record,
    )
