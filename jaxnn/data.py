"""Datasets in the seeds' column layout: X is ``(n_x, m)``, Y is ``(n_y, m)``.

Every loader returns a ``Dataset`` whose test part is held out by a
deterministic stratified split (``stratified_split``: the same fraction of
every class, or of every target decile for regression) and whose features are
standardised with the mean and standard deviation of the training part only:

* ``digits``: scikit-learn's bundled 8x8 handwritten digits, 64 features, 10
  classes, one-hot Y; softmax + cross_entropy;
* ``breast_cancer``: scikit-learn's bundled Wisconsin data, 30 features, Y is
  ``(1, m)`` of 0 (malignant) and 1 (benign); sigmoid + binary_cross_entropy;
* ``diabetes``: scikit-learn's bundled data, 10 features, the target
  standardised (on the training part) too; linear + mse;
* ``mnist``: read from a directory holding the four IDX files (gzipped or not)
  or a keras-style ``mnist.npz``; its own train/test split; 784 features.

Tabular features (breast_cancer, diabetes) are standardised one by one; a
feature constant on the training part would only be centred. Images (digits,
mnist) are standardised with one mean and one standard deviation over all
training pixels (for MNIST, the usual 0.1307 and 0.3081 of x / 255): pixels
share one scale, and per pixel the near-empty border pixels would be divided by
a tiny deviation and blow up on the test set (on digits it also costs about
half a point of test accuracy).

Each dataset records its scaling in ``Dataset.preprocessing`` (a ``Preprocessing``:
the feature names, one mean and standard deviation per raw feature, the class names
or the target's mean and std), so that a trained model takes raw rows
(``jaxnn.load_run``): an image's one mean and std repeat in every pixel's entry.

Only the bundled datasets need scikit-learn, imported when they are loaded.
"""

import gzip
import importlib.util
import os
import struct
import zipfile
import zlib
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

from jaxnn.losses import Head, head
from jaxnn.network import Network
from jaxnn.validation import check_finite, check_labels, is_labels
from jaxnn.validation import one_hot as one_hot

__all__ = [
    "DATASETS",
    "MNIST_FILES",
    "Dataset",
    "Preprocessing",
    "breast_cancer",
    "diabetes",
    "digits",
    "load",
    "load_mnist_arrays",
    "mnist",
    "one_hot",
    "read_idx",
    "stratified_split",
    "target_deciles",
]

DATASETS = ("digits", "breast_cancer", "diabetes", "mnist")

_PathLike = str | os.PathLike


class Preprocessing(NamedTuple):
    """How a dataset's raw examples became its arrays: what a trained model needs to take
    raw rows.

    Each raw feature x_j became ``(x_j - feature_mean[j]) / feature_std[j]`` (vectors of
    n_x entries, ``feature_std`` 1 where a feature was constant). For classification,
    output unit (or, for one sigmoid unit, label) i is the class ``classes[i]``; for
    regression the target y became ``(y - target_mean) / target_std``. ``target`` names
    the target; ``feature_names`` the features, in the arrays' row order.
    """

    feature_names: tuple[str, ...]
    feature_mean: np.ndarray
    feature_std: np.ndarray
    target: str
    classes: tuple | None = None
    target_mean: float | None = None
    target_std: float | None = None


class Dataset(NamedTuple):
    """Train and test parts in column layout, and the network head that fits them.

    ``X_*`` is ``(n_x, m)``, ``Y_*`` is ``(n_y, m)`` (one-hot for more than two
    classes), or integer class labels of shape ``(m,)`` for a softmax +
    cross-entropy head; ``task`` is ``"classification"`` or ``"regression"``;
    ``output_activation`` and ``loss`` are the default head for the task;
    ``preprocessing``, where known, how the raw data was scaled (``Preprocessing``).
    """

    X_train: np.ndarray
    Y_train: np.ndarray
    X_test: np.ndarray
    Y_test: np.ndarray
    task: str
    output_activation: str
    loss: str
    name: str = ""
    preprocessing: Preprocessing | None = None

    def network(
        self,
        hidden: Sequence[int] = (64, 64),
        activation: str = "relu",
        *,
        n_classes: int | None = None,
    ) -> Network:
        """A ``Network`` with these hidden layer sizes and this data's inputs and head.

        The output layer has one unit per row of ``Y_train``, ``(n_y, m)``. For integer
        class labels, ``Y_train`` of shape ``(m,)`` (softmax + cross-entropy), it has
        one unit per class: ``n_classes`` if given, else the largest label in
        ``Y_train`` and ``Y_test`` plus one. Any other 1-D ``Y_train`` is a ValueError.
        """
        hidden = tuple(hidden)
        sizes = (np.shape(self.X_train)[0], *hidden, self._outputs(n_classes))
        return Network(sizes, (activation,) * len(hidden) + (self.output_activation,), self.loss)

    def _outputs(self, n_classes: int | None) -> int:
        """n^[L]: Y_train's rows, or the number of classes of integer labels."""
        shape = np.shape(self.Y_train)
        if len(shape) == 2:
            if n_classes is not None and n_classes != shape[0]:
                raise ValueError(
                    f"n_classes is {n_classes}, but Y_train has shape {shape}: {shape[0]} outputs"
                )
            return shape[0]
        if not is_labels(self.Y_train):
            raise ValueError(
                f"Y_train has shape {shape} and dtype {np.asarray(self.Y_train).dtype}; give "
                "(n_y, m) targets, one example per column, or integer class labels (m,)"
            )
        if (self.output_activation, self.loss) != ("softmax", "cross_entropy"):
            raise ValueError(
                f"Y_train holds integer class labels, which need a softmax output with "
                f"cross_entropy; this dataset's head is {self.output_activation} with "
                f"{self.loss}: give (n_y, m) targets"
            )
        labelled = [self.Y_train] + ([self.Y_test] if is_labels(self.Y_test) else [])
        if n_classes is None:
            n_classes = 1 + max((int(np.max(y)) for y in labelled if np.size(y)), default=0)
            if n_classes < 2:
                raise ValueError(
                    f"Y_train's labels name {n_classes} class; a softmax output needs at least "
                    "2: pass n_classes"
                )
        for name, y in zip(("Y_train", "Y_test"), labelled, strict=False):
            check_labels(y, n_classes, name)
        return n_classes


def load(name: str, data_dir: _PathLike | None = None, **kwargs: Any) -> Dataset:
    """The dataset called ``name`` (one of ``DATASETS``); ``data_dir`` is for ``mnist``."""
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if name == "mnist":
        return mnist(data_dir, **kwargs)
    if data_dir is not None:
        raise ValueError(
            f"dataset {name!r} is bundled with scikit-learn and takes no data directory"
        )
    return {"digits": digits, "breast_cancer": breast_cancer, "diabetes": diabetes}[name](**kwargs)


def target_deciles(y: ArrayLike) -> np.ndarray:
    """The decile (0-9) of each value of a regression target ``y``: the strata of
    ``stratified_split`` for regression."""
    y = np.asarray(y)
    return np.searchsorted(np.quantile(y, np.linspace(0, 1, 11)[1:-1]), y, side="right")


def stratified_split(
    labels: ArrayLike, test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Indices ``(train, test)``, each sorted: ``round(test_fraction * n_c)`` of
    every label value c go to the test part, chosen by a fixed permutation.

    Warning: this is not scikit-learn's ``train_test_split(..., stratify=labels)``,
    and gives another split. scikit-learn rounds the test part's size once, over
    all classes (360 of the 1797 digits at 0.2, where this rounds per class and
    takes 359), shares it out among the classes, and draws with its own generator.
    jaxnn keeps its own split because the built-in datasets' splits are pinned by
    the tests and the benchmarks (BENCHMARKS.md's digits results), and because it
    needs no scikit-learn: NumPy alone, for any labels.
    """
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = round(test_fraction * len(idx))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _scaling(train: np.ndarray, axis: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """The mean and std of ``train`` along ``axis`` (1: per feature, over the examples;
    None: one mean and std over all entries), kept as ``(n, 1)`` or ``(1, 1)``; a std
    of 0 is taken as 1."""
    mean = np.mean(train, axis=axis, keepdims=True)
    std = np.std(train, axis=axis, keepdims=True)
    return mean, np.where(std > 0, std, 1.0)


def _per_row(value: np.ndarray, n: int) -> np.ndarray:
    """A ``(n, 1)`` or ``(1, 1)`` statistic as a vector of n entries, one per row."""
    return np.broadcast_to(np.asarray(value, np.float64).reshape(-1), (n,)).copy()


def _pixel_names(shape: tuple[int, ...]) -> tuple[str, ...]:
    """``pixel_<row>_<col>`` for an image of ``shape`` (scikit-learn's names for digits),
    ``pixel_<j>`` for flat images."""
    if len(shape) == 2:
        return tuple(f"pixel_{i}_{j}" for i in range(shape[0]) for j in range(shape[1]))
    return tuple(f"pixel_{j}" for j in range(int(np.prod(shape))))


def _sklearn_datasets():
    try:
        import sklearn.datasets
    except ImportError:
        raise ImportError(
            "the bundled datasets need scikit-learn: pip install 'jaxnn[cli]'"
        ) from None
    return sklearn.datasets


def _split_and_scale(
    X, Y, strata, name, out: Head, test_fraction, seed, dtype, axis=1, *, labels
) -> Dataset:
    """X is (m, n_x) as scikit-learn gives it; Y is (n_y, m); ``out`` the output head;
    ``labels`` a ``Preprocessing`` without its statistics (names and classes)."""
    train, test = stratified_split(strata, test_fraction, seed)
    X = np.asarray(X, np.float64).T
    mean, std = _scaling(X[:, train], axis)
    X_train, X_test = ((x - mean) / std for x in (X[:, train], X[:, test]))
    Y_train, Y_test = Y[:, train], Y[:, test]
    n_x = X.shape[0]
    labels = labels._replace(feature_mean=_per_row(mean, n_x), feature_std=_per_row(std, n_x))
    if out.task == "regression":
        y_mean, y_std = _scaling(Y_train)
        Y_train, Y_test = ((y - y_mean) / y_std for y in (Y_train, Y_test))
        labels = labels._replace(target_mean=float(y_mean[0, 0]), target_std=float(y_std[0, 0]))
    arrays = (np.asarray(a, dtype) for a in (X_train, Y_train, X_test, Y_test))
    return Dataset(*arrays, out.task, out.activation, out.loss, name, labels)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as ``(X (1797, 64), labels (1797,))``, as ``load_digits`` gives.

    Read straight from the CSV file scikit-learn ships (``sklearn/datasets/data/
    digits.csv.gz``, pixels then the label on each line), as ``load_digits`` does:
    importing ``sklearn.datasets`` takes about 1.3 s, longer than a warm ``jaxnn
    train`` on digits. Falls back to ``load_digits`` if the file is not where it was.
    """
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    if spec is not None and spec.submodule_search_locations:
        path = os.path.join(spec.submodule_search_locations[0], "datasets", "data", "digits.csv.gz")
        if os.path.isfile(path):
            table = np.loadtxt(path, delimiter=",")
            return table[:, :-1], table[:, -1].astype(int)
    return _sklearn_datasets().load_digits(return_X_y=True)


def digits(*, test_fraction: float = 0.2, seed: int = 0, dtype: DTypeLike = np.float32) -> Dataset:
    """scikit-learn's 8x8 digits: 1797 examples, 64 pixels (0-16), 10 classes (softmax)."""
    X, y = _digits_arrays()
    out = head("softmax", "cross_entropy")
    labels = Preprocessing(_pixel_names((8, 8)), None, None, "digit", tuple(range(10)))
    Y = one_hot(y, 10)
    return _split_and_scale(X, Y, y, "digits", out, test_fraction, seed, dtype, None, labels=labels)


def breast_cancer(
    *, test_fraction: float = 0.2, seed: int = 0, dtype: DTypeLike = np.float32
) -> Dataset:
    """Wisconsin breast cancer: 569 examples, 30 features, 1 sigmoid output."""
    bunch = _sklearn_datasets().load_breast_cancer()
    X, y = bunch.data, bunch.target
    out = head("sigmoid", "binary_cross_entropy")
    Y = np.asarray(y, np.float64)[None, :]
    names, classes = tuple(map(str, bunch.feature_names)), tuple(map(str, bunch.target_names))
    labels = Preprocessing(names, None, None, "diagnosis", classes)  # 0 malignant, 1 benign
    return _split_and_scale(
        X, Y, y, "breast_cancer", out, test_fraction, seed, dtype, labels=labels
    )


def diabetes(
    *, test_fraction: float = 0.2, seed: int = 0, dtype: DTypeLike = np.float32
) -> Dataset:
    """Diabetes progression: 442 examples, 10 features, 1 linear output (standardised)."""
    bunch = _sklearn_datasets().load_diabetes(scaled=False)
    X, y = bunch.data, bunch.target
    deciles = target_deciles(y)
    Y = np.asarray(y, np.float64)[None, :]
    out = head("linear", "mse")
    labels = Preprocessing(tuple(map(str, bunch.feature_names)), None, None, "progression")
    return _split_and_scale(
        X, Y, deciles, "diabetes", out, test_fraction, seed, dtype, labels=labels
    )


# --- MNIST from files -------------------------------------------------------------------

# IDX: two zero bytes, a type code, the number of dimensions, then one big-endian
# uint32 per dimension, then the data, big-endian, row-major.
_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte",
    "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte",
    "y_test": "t10k-labels-idx1-ubyte",
}


def _read_bytes(path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == b"\x1f\x8b":  # gzip's magic, whatever the file's name
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: not a valid gzip file ({e})") from None
    return raw


def read_idx(path: _PathLike) -> np.ndarray:
    """The array in an IDX file (gzipped or not), validated against its header."""
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise ValueError(f"{path}: {len(raw)} bytes, too short for an IDX header")
    magic = int.from_bytes(raw[:4], "big")
    if raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(
            f"{path}: bad magic number 0x{magic:08x}; an IDX file starts with two zero bytes "
            "and a type code 0x08 (ubyte), 0x09, 0x0b, 0x0c, 0x0d or 0x0e, e.g. 0x00000803 "
            "for images and 0x00000801 for labels"
        )
    ndim = raw[3]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise ValueError(f"{path}: truncated header: {ndim} dimensions need {start} bytes")
    dims = struct.unpack(f">{ndim}I", raw[4:start])
    dtype = np.dtype(_IDX_TYPES[raw[2]])
    count = int(np.prod(dims, dtype=np.int64))
    need, have = count * dtype.itemsize, len(raw) - start
    if have != need:
        what = "truncated" if have < need else "too long"
        raise ValueError(
            f"{path}: {what}: the header declares shape {dims}, {need} bytes of data, "
            f"but the file holds {have}"
        )
    data = np.frombuffer(raw, dtype, count=count, offset=start).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _find_idx(data_dir, stem):
    for name in (stem, stem.replace("-idx", ".idx")):
        for candidate in (name, name + ".gz"):
            path = os.path.join(data_dir, candidate)
            if os.path.isfile(path):
                return path
    return None


def _check_pair(images, labels, split, where):
    if images.ndim not in (2, 3):
        raise ValueError(
            f"{where}: {split} images have shape {images.shape}; expected (m, rows, cols) or (m, n)"
        )
    if labels.ndim != 1:
        raise ValueError(f"{where}: {split} labels have shape {labels.shape}; expected (m,)")
    if images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{where}: {images.shape[0]} {split} images but {labels.shape[0]} {split} labels"
        )
    if images.shape[0] == 0:
        raise ValueError(f"{where}: no {split} images")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(
            f"{where}: {split} labels must be integers from 0 to 9, got dtype {labels.dtype}"
        )
    check_labels(labels, 10, f"{where}: {split} labels")
    if not (np.issubdtype(images.dtype, np.integer) or np.issubdtype(images.dtype, np.floating)):
        raise ValueError(f"{where}: {split} images have dtype {images.dtype}; expected numbers")
    n = int(np.prod(images.shape[1:]))
    check_finite(images.reshape(len(images), n).T, f"{where}: {split} images", "pixel")


def load_mnist_arrays(
    data_dir: _PathLike | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)`` from the IDX files or ``mnist.npz``.

    ``data_dir`` is a directory holding either the four IDX files (each named as
    in ``MNIST_FILES``, optionally ending in ``.gz``, or with ``.idx`` in place
    of ``-idx``) or ``mnist.npz`` with arrays ``x_train, y_train, x_test,
    y_test``; or the path of such an ``.npz`` file. Images are ``(m, rows,
    cols)``, labels ``(m,)``. Nothing is unpickled.
    """
    if data_dir is None:
        raise ValueError(
            "mnist needs a data directory holding the IDX files "
            f"({', '.join(MNIST_FILES.values())}, optionally .gz) or mnist.npz"
        )
    data_dir = os.fspath(data_dir)
    if os.path.isfile(data_dir) and data_dir.endswith(".npz"):
        return _load_npz(data_dir)
    if not os.path.isdir(data_dir):
        raise ValueError(f"mnist data directory {data_dir!r} does not exist")
    paths = {key: _find_idx(data_dir, stem) for key, stem in MNIST_FILES.items()}
    if all(paths.values()):
        arrays = {key: read_idx(path) for key, path in paths.items()}
        for split in ("train", "test"):
            where = f"{paths['x_' + split]} and {paths['y_' + split]}"
            _check_pair(arrays["x_" + split], arrays["y_" + split], split, where)
        return tuple(arrays[k] for k in MNIST_FILES)
    npz = os.path.join(data_dir, "mnist.npz")
    if os.path.isfile(npz):
        return _load_npz(npz)
    missing = [MNIST_FILES[k] for k, p in paths.items() if p is None]
    if len(missing) < len(MNIST_FILES):
        raise ValueError(
            f"mnist data directory {data_dir!r} lacks {', '.join(missing)} (or .gz) "
            "and holds no mnist.npz"
        )
    raise ValueError(
        f"mnist data directory {data_dir!r} holds neither the IDX files "
        f"({', '.join(MNIST_FILES.values())}, optionally .gz) nor mnist.npz"
    )


def _load_npz(path):
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path}: not a valid .npz file (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in MNIST_FILES if k not in f.files]
            if missing:
                raise ValueError(
                    f"{path}: missing arrays {', '.join(missing)}; found {', '.join(f.files)}"
                )
            arrays = {k: f[k] for k in MNIST_FILES}
    except ValueError as e:
        if str(e).startswith(path):
            raise
        raise ValueError(f"{path}: not a readable .npz of plain arrays ({e})") from None
    except (OSError, EOFError) as e:
        raise ValueError(f"{path}: not a valid .npz file ({e})") from None
    for split in ("train", "test"):
        _check_pair(arrays["x_" + split], arrays["y_" + split], split, path)
    return tuple(arrays[k] for k in MNIST_FILES)


def mnist(data_dir: _PathLike | None, *, dtype: DTypeLike = np.float32) -> Dataset:
    """MNIST from files (see ``load_mnist_arrays``), with its own train/test split.

    Pixels are standardised with one mean and std over all training pixels.
    """
    x_train, y_train, x_test, y_test = load_mnist_arrays(data_dir)
    dtype = np.dtype(dtype)
    n_x = int(np.prod(x_train.shape[1:]))
    if int(np.prod(x_test.shape[1:])) != n_x:
        raise ValueError(
            f"mnist: train images have shape {x_train.shape[1:]}, test images "
            f"{x_test.shape[1:]}; they must match"
        )
    X_train = x_train.reshape(len(x_train), n_x).T.astype(dtype)
    X_test = x_test.reshape(len(x_test), n_x).T.astype(dtype)
    # Statistics in float64, the arrays (60000 x 784) in dtype.
    mean = X_train.mean(dtype=np.float64)
    std = X_train.std(dtype=np.float64)
    std = std if std > 0 else 1.0
    mean, std = dtype.type(mean), dtype.type(std)
    X_train = (X_train - mean) / std
    X_test = (X_test - mean) / std
    out = head("softmax", "cross_entropy")
    Y_train, Y_test = (one_hot(y, 10, dtype) for y in (y_train, y_test))
    labels = Preprocessing(
        _pixel_names(x_train.shape[1:]),
        np.full(n_x, float(mean)),
        np.full(n_x, float(std)),
        "digit",
        tuple(range(10)),
    )
    fields = (out.task, out.activation, out.loss, "mnist", labels)
    return Dataset(X_train, Y_train, X_test, Y_test, *fields)
