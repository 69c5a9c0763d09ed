"""Datasets: the bundled ones' layout, split and scaling; MNIST files, good and malformed."""

import gzip
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from jaxnn import data

# --- writing small MNIST-like files ------------------------------------------------------


def idx_bytes(array, type_code=0x08, dtype=">u1"):
    """An IDX file's bytes: magic (0, 0, type, ndim), big-endian dims, big-endian data."""
    array = np.asarray(array)
    header = bytes([0, 0, type_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(dtype).tobytes()


def small_mnist(seed=0, m_train=30, m_test=10, shape=(4, 3)):
    rng = np.random.default_rng(seed)
    return {
        "x_train": rng.integers(0, 256, (m_train, *shape), dtype=np.uint8),
        "y_train": np.arange(m_train, dtype=np.uint8) % 10,
        "x_test": rng.integers(0, 256, (m_test, *shape), dtype=np.uint8),
        "y_test": np.arange(m_test, dtype=np.uint8)[::-1] % 10,
    }


def write_idx_dir(directory, arrays, gz=False, names=None):
    names = names or data.MNIST_FILES
    os.makedirs(directory, exist_ok=True)
    for key, stem in names.items():
        raw = idx_bytes(arrays[key])
        path = os.path.join(directory, stem + (".gz" if gz else ""))
        with open(path, "wb") as f:
            f.write(gzip.compress(raw) if gz else raw)
    return directory


def write_npz_dir(directory, arrays):
    os.makedirs(directory, exist_ok=True)
    np.savez(os.path.join(directory, "mnist.npz"), **arrays)
    return directory


def assert_matches(ds, arrays):
    """The Dataset holds the arrays' images (standardised) and one-hot labels, in columns."""
    m_train, m_test = len(arrays["y_train"]), len(arrays["y_test"])
    n_x = int(np.prod(arrays["x_train"].shape[1:]))
    assert ds.X_train.shape == (n_x, m_train) and ds.X_test.shape == (n_x, m_test)
    assert ds.Y_train.shape == (10, m_train) and ds.Y_test.shape == (10, m_test)
    assert ds.X_train.dtype == np.float32
    np.testing.assert_array_equal(ds.Y_train.argmax(axis=0), arrays["y_train"])
    np.testing.assert_array_equal(ds.Y_test.argmax(axis=0), arrays["y_test"])
    np.testing.assert_array_equal(ds.Y_train.sum(axis=0), 1)
    # Column i is example i, pixels row-major; one mean and std over the training pixels.
    x = arrays["x_train"].reshape(m_train, n_x).T.astype(np.float64)
    mean, std = x.mean(), x.std()
    np.testing.assert_allclose(ds.X_train, (x - mean) / std, rtol=1e-5, atol=1e-5)
    x_test = arrays["x_test"].reshape(m_test, n_x).T
    np.testing.assert_allclose(ds.X_test, (x_test - mean) / std, rtol=1e-5, atol=1e-5)
    assert (ds.task, ds.output_activation, ds.loss) == (
        "classification",
        "softmax",
        "cross_entropy",
    )


@pytest.mark.parametrize("gz", [False, True], ids=["raw", "gz"])
def test_mnist_idx(tmp_path, gz):
    arrays = small_mnist()
    ds = data.load("mnist", write_idx_dir(tmp_path, arrays, gz=gz))
    assert_matches(ds, arrays)


def test_mnist_idx_dotted_names(tmp_path):
    """Some distributions name the files train-images.idx3-ubyte; both are found."""
    arrays = small_mnist()
    names = {k: v.replace("-idx", ".idx") for k, v in data.MNIST_FILES.items()}
    assert_matches(data.mnist(write_idx_dir(tmp_path, arrays, gz=True, names=names)), arrays)


def test_mnist_npz(tmp_path):
    arrays = small_mnist(seed=1)
    directory = write_npz_dir(tmp_path, arrays)
    assert_matches(data.mnist(directory), arrays)
    assert_matches(data.mnist(os.path.join(directory, "mnist.npz")), arrays)  # the file itself


def test_mnist_idx_and_npz_agree(tmp_path):
    arrays = small_mnist(seed=2)
    a = data.mnist(write_idx_dir(tmp_path / "idx", arrays))
    b = data.mnist(write_npz_dir(tmp_path / "npz", arrays))
    for x, y in zip(a[:4], b[:4], strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.parametrize(
    ("dtype", "code"), [(">i1", 0x09), (">i2", 0x0B), (">i4", 0x0C), (">f4", 0x0D), (">f8", 0x0E)]
)
def test_read_idx_types(tmp_path, dtype, code):
    array = np.arange(-12, 12).reshape(2, 3, 4)
    path = tmp_path / "a.idx"
    path.write_bytes(idx_bytes(array, code, dtype))
    got = data.read_idx(path)
    assert got.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(got, array)


GOOD = idx_bytes(small_mnist()["x_train"])


@pytest.mark.parametrize(
    ("key", "raw", "words"),
    [
        ("x_train", b"\x08\x03" + GOOD[2:], "bad magic number 0x08030803"),
        ("x_train", b"\x00\x00\x07\x03" + GOOD[4:], "bad magic number 0x00000703"),
        ("x_train", GOOD[:-5], "truncated: the header declares shape (30, 4, 3), 360 bytes"),
        ("x_train", GOOD[:10], "truncated header: 3 dimensions need 16 bytes"),
        ("x_train", GOOD[:2], "too short for an IDX header"),
        ("x_train", GOOD + b"\x00", "too long"),
        ("y_train", idx_bytes(np.arange(29) % 10), "30 train images but 29 train labels"),
        ("y_test", idx_bytes(np.full(10, 11)), "test labels must be from 0 to 9"),
        ("y_train", idx_bytes(np.zeros((30, 2))), "train labels have shape (30, 2)"),
        ("x_test", idx_bytes(np.zeros(10)), "test images have shape (10,)"),
        ("x_test", gzip.compress(GOOD)[:-20], "not a valid gzip file"),
    ],
    ids=[
        "magic-nonzero",
        "magic-type",
        "truncated-data",
        "truncated-header",
        "tiny",
        "too-long",
        "count-mismatch",
        "label-range",
        "label-ndim",
        "image-ndim",
        "bad-gzip",
    ],
)
def test_mnist_idx_malformed(tmp_path, key, raw, words):
    write_idx_dir(tmp_path, small_mnist())
    path = tmp_path / data.MNIST_FILES[key]
    path.write_bytes(raw)
    with pytest.raises(ValueError) as e:
        data.mnist(tmp_path)
    assert words in str(e.value)
    assert str(path) in str(e.value)  # the message names the file


def test_mnist_missing_files(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        data.mnist(tmp_path / "nowhere")
    with pytest.raises(ValueError, match=r"holds neither the IDX files .* nor mnist\.npz"):
        data.mnist(tmp_path)
    write_idx_dir(tmp_path, small_mnist())
    os.remove(tmp_path / data.MNIST_FILES["y_test"])
    with pytest.raises(ValueError, match="lacks t10k-labels-idx1-ubyte"):
        data.mnist(tmp_path)
    with pytest.raises(ValueError, match="mnist needs a data directory"):
        data.load("mnist")


def test_mnist_npz_malformed(tmp_path):
    arrays = small_mnist()
    path = tmp_path / "mnist.npz"
    np.savez(path, **{k: v for k, v in arrays.items() if k != "y_test"})
    with pytest.raises(ValueError, match="missing arrays y_test"):
        data.mnist(tmp_path)
    np.savez(path, **{**arrays, "y_test": np.array([None] * 10, dtype=object)})
    with pytest.raises(ValueError, match=r"not a readable \.npz of plain arrays"):
        data.mnist(tmp_path)  # an object array would need pickle: refused
    np.savez(path, **{**arrays, "y_train": arrays["y_train"][:-1]})
    with pytest.raises(ValueError, match="30 train images but 29 train labels"):
        data.mnist(tmp_path)
    path.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match=r"mnist\.npz: not a valid \.npz file"):
        data.mnist(tmp_path)


def test_mnist_bad_values(tmp_path):
    """Float images with NaN or Inf, no images at all: errors naming the file and place."""
    arrays = small_mnist()
    images = arrays["x_test"].astype(np.float32)
    images[4, 2, 1] = np.nan  # image 4, pixel 2 * 3 + 1 = 7
    path = tmp_path / data.MNIST_FILES["x_test"]
    write_idx_dir(tmp_path, arrays)
    path.write_bytes(idx_bytes(images, 0x0D, ">f4"))
    with pytest.raises(ValueError) as e:
        data.mnist(tmp_path)
    assert str(e.value) == (
        f"{path} and {tmp_path / data.MNIST_FILES['y_test']}: test images has 1 non-finite "
        "values (NaN or Inf), first at pixel 7, example 4"
    )
    empty = {**arrays, "x_train": arrays["x_train"][:0], "y_train": arrays["y_train"][:0]}
    write_npz_dir(tmp_path / "npz", empty)
    with pytest.raises(ValueError, match=r"mnist\.npz: no train images"):
        data.mnist(tmp_path / "npz")
    write_npz_dir(tmp_path / "floats", {**arrays, "y_train": arrays["y_train"] * 1.0})
    with pytest.raises(ValueError, match="train labels must be integers from 0 to 9, got dtype"):
        data.mnist(tmp_path / "floats")


ONE_HOT_ERRORS = [
    # (labels, n_classes, message)
    (
        [0, 3, 1],
        3,
        r"labels must be from 0 to 2 \(3 classes\), and 1 is not: the first is label 3 "
        r"\(example 1\)",
    ),
    ([0, -1, 5, 1], 3, r"and 2 are not: the first is label -1 \(example 1\)"),
    ([0.0, 1.5], 3, r"labels must be integers, and label 1.5 \(example 1\) is not"),
    ([0.0, np.nan], 3, r"labels must be integers, and label nan \(example 1\) is not"),
    ([[0, 1]], 3, r"labels must be a vector \(m,\) of integers, got shape \(1, 2\)"),
    (["a", "b"], 3, r"labels must be integers, got dtype <U1"),
    ([[0], [1, 2]], 3, r"labels must be a vector of integers"),
    ([0, 1], 0, r"n_classes must be an integer >= 1, got 0"),
    ([0, 1], 2.0, r"n_classes must be an integer >= 1, got 2.0"),
]


@pytest.mark.parametrize(("labels", "n_classes", "message"), ONE_HOT_ERRORS)
def test_one_hot_errors(labels, n_classes, message):
    with pytest.raises(ValueError, match=message):
        data.one_hot(labels, n_classes)


def test_one_hot():
    Y = data.one_hot(np.array([2, 0, 1, 2], np.uint8), 3)
    np.testing.assert_array_equal(Y, [[0, 1, 0, 0], [0, 0, 1, 0], [1, 0, 0, 1]])
    np.testing.assert_array_equal(data.one_hot([2.0, 0.0, 1.0, 2.0], 3), Y)  # integral floats
    assert data.one_hot([], 4).shape == (4, 0)


def test_one_hot_is_the_one_rule_in_every_layout():
    """``jaxnn.data.one_hot`` is ``jaxnn.validation.one_hot``: classes on axis 0 or 1,
    NumPy in NumPy out, a JAX array in a JAX array out, and under jit (labels that
    cannot be inspected) NaN targets for a label out of range."""
    import jax
    import jax.numpy as jnp

    from jaxnn import validation

    assert data.one_hot is validation.one_hot
    labels = np.array([2, 0, 1])
    columns = data.one_hot(labels, 3)
    np.testing.assert_array_equal(data.one_hot(labels, 3, axis=1), columns.T)
    on_device = data.one_hot(jnp.asarray(labels), 3, np.float32)
    assert isinstance(on_device, jax.Array) and on_device.dtype == np.float32
    np.testing.assert_array_equal(on_device, columns)
    traced = jax.jit(lambda y: data.one_hot(y, 3))(jnp.array([2, 3]))
    np.testing.assert_array_equal(traced[:, 0], [0, 0, 1])
    assert np.isnan(traced[:, 1]).all()


def labelled(Y_train, Y_test, head=("softmax", "cross_entropy")):
    """A Dataset of 5 inputs with these targets, three examples for every label."""
    X = lambda Y: np.zeros((5, np.shape(Y)[-1]))
    task = "classification" if head[0] != "linear" else "regression"
    return data.Dataset(X(Y_train), Y_train, X(Y_test), Y_test, task, *head)


def test_dataset_network_counts_classes_of_integer_labels():
    """Integer labels (m,): one output unit per class (the largest label plus one, or
    n_classes), not one per example; labels the head cannot take are refused."""
    ds = labelled(np.array([0, 2, 1, 2, 0, 1]), np.array([3, 0, 1]))
    assert ds.network((4,)).sizes == (5, 4, 4)  # label 3 is in the test part only
    assert ds.network((4,), n_classes=7).sizes == (5, 4, 7)
    with pytest.raises(ValueError, match=r"Y_test must be from 0 to 2 \(3 classes\), and 1"):
        ds.network(n_classes=3)
    one_hot = labelled(data.one_hot([0, 2, 1], 3), data.one_hot([1], 3))
    assert one_hot.network(()).sizes == (5, 3)
    with pytest.raises(ValueError, match=r"n_classes is 4, but Y_train has shape \(3, 3\)"):
        one_hot.network(n_classes=4)
    with pytest.raises(ValueError, match="labels name 1 class; a softmax output needs at least"):
        labelled(np.zeros(4, int), np.zeros(2, int)).network()
    with pytest.raises(ValueError, match="which need a softmax output with cross_entropy"):
        labelled(np.array([0, 1]), np.array([1]), ("sigmoid", "binary_cross_entropy")).network()
    with pytest.raises(ValueError, match=r"Y_train has shape \(6,\) and dtype float64; give"):
        labelled(np.linspace(0, 1, 6), np.zeros(2), ("linear", "mse")).network()


# --- the bundled datasets ------------------------------------------------------------------

BUNDLED = {
    # name: (n_x, n_y, m, task, output activation, loss)
    "digits": (64, 10, 1797, "classification", "softmax", "cross_entropy"),
    "breast_cancer": (30, 1, 569, "classification", "sigmoid", "binary_cross_entropy"),
    "diabetes": (10, 1, 442, "regression", "linear", "mse"),
}


@pytest.fixture(scope="module", params=sorted(BUNDLED))
def bundled(request):
    return request.param, data.load(request.param)


def test_bundled_layout(bundled):
    name, ds = bundled
    n_x, n_y, m, task, act, loss = BUNDLED[name]
    m_train, m_test = ds.X_train.shape[1], ds.X_test.shape[1]
    assert m_train + m_test == m and abs(m_test - 0.2 * m) <= 10
    assert ds.X_train.shape == (n_x, m_train) and ds.X_test.shape == (n_x, m_test)
    assert ds.Y_train.shape == (n_y, m_train) and ds.Y_test.shape == (n_y, m_test)
    assert all(a.dtype == np.float32 for a in ds[:4])
    assert (ds.task, ds.output_activation, ds.loss, ds.name) == (task, act, loss, name)
    net = ds.network((7,), "tanh")
    assert net.sizes == (n_x, 7, n_y) and net.activations == ("tanh", act) and net.loss == loss


def test_bundled_scaling_fit_on_train(bundled):
    name, ds = bundled
    axis = None if name == "digits" else 1  # images: one scale for all pixels
    X = ds.X_train.astype(np.float64)
    np.testing.assert_allclose(X.mean(axis=axis), 0, atol=1e-5)
    std = X.std(axis=axis)
    np.testing.assert_allclose(std[std > 0] if axis else std, 1, rtol=1e-5)
    assert np.abs(ds.X_test.mean(axis=axis)).max() > 1e-4  # the test part is not refit
    if name == "diabetes":
        np.testing.assert_allclose(ds.Y_train.mean(), 0, atol=1e-5)
        np.testing.assert_allclose(ds.Y_train.std(), 1, rtol=1e-5)


def test_bundled_labels(bundled):
    name, ds = bundled
    if name == "digits":
        for Y in (ds.Y_train, ds.Y_test):
            assert set(np.unique(Y)) == {0, 1}
            np.testing.assert_array_equal(Y.sum(axis=0), 1)
        # Stratified: every class's share of the test part is within one example of 20%.
        per_class = ds.Y_test.sum(axis=1) / (ds.Y_test.sum(axis=1) + ds.Y_train.sum(axis=1))
        assert np.all(np.abs(per_class - 0.2) < 0.01)
    elif name == "breast_cancer":
        assert set(np.unique(ds.Y_train)) == {0, 1}


def test_bundled_deterministic():
    a, b = data.digits(), data.digits()
    for x, y in zip(a[:4], b[:4], strict=True):
        np.testing.assert_array_equal(x, y)
    c = data.digits(seed=1)
    assert not np.array_equal(a.X_test, c.X_test)


@pytest.mark.parametrize("seed", [0, 3])
def test_stratified_split(seed):
    labels = np.repeat(np.arange(4), [10, 20, 31, 5])
    train, test = data.stratified_split(labels, 0.2, seed)
    assert np.array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    np.testing.assert_array_equal(np.bincount(labels[test]), [2, 4, 6, 1])
    again = data.stratified_split(labels, 0.2, seed)
    np.testing.assert_array_equal(test, again[1])
    with pytest.raises(ValueError, match=r"test_fraction must be in \(0, 1\)"):
        data.stratified_split(labels, 1.0)


def test_digits_split_is_pinned_and_not_scikit_learns():
    """The digits split the benchmarks rely on, pinned; scikit-learn's stratified
    ``train_test_split`` gives another one (360 test examples, not 359), which is why
    ``stratified_split`` is jaxnn's own (its docstring)."""
    import hashlib

    from sklearn.model_selection import train_test_split

    _, y = data._digits_arrays()
    train, test = data.stratified_split(y, 0.2, 0)
    assert (len(train), len(test)) == (1438, 359)
    assert hashlib.sha256(test.astype(np.int64).tobytes()).hexdigest()[:16] == "f71c9ddf317ebe27"
    _, sk_test = train_test_split(np.arange(len(y)), test_size=0.2, stratify=y, random_state=0)
    assert len(sk_test) == 360


def test_load_errors():
    with pytest.raises(ValueError, match="unknown dataset 'iris'; valid: digits, breast_cancer"):
        data.load("iris")
    with pytest.raises(ValueError, match="takes no data directory"):
        data.load("digits", "/tmp")


def test_missing_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)  # import sklearn now raises ImportError
    monkeypatch.setitem(sys.modules, "sklearn.datasets", None)
    with pytest.raises(ImportError, match=r"pip install 'jaxnn\[cli\]'"):
        data.digits()


@pytest.mark.slow
def test_import_needs_no_cli_extras():
    """jaxnn, jaxnn.train and jaxnn.data import with the cli extras unavailable."""
    code = (
        "import sys\n"
        "extras = ('sklearn', 'tqdm', 'matplotlib', 'orbax', 'orbax.checkpoint')\n"
        "for name in extras: sys.modules[name] = None\n"  # importing any of them fails
        "import jaxnn, jaxnn.train, jaxnn.data, jaxnn.cli\n"
        "print(sorted(m for m in sys.modules if sys.modules[m] is not None\n"
        "             and m.split('.')[0] in ('sklearn', 'tqdm', 'matplotlib', 'orbax')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]"


def test_digits_read_without_sklearn_equal_load_digits():
    """The bundled CSV, read directly, is exactly what scikit-learn's load_digits returns."""
    from sklearn.datasets import load_digits

    X, y = data._digits_arrays()
    X_ref, y_ref = load_digits(return_X_y=True)
    assert X.dtype == X_ref.dtype and y.dtype == y_ref.dtype
    np.testing.assert_array_equal(X, X_ref)
    np.testing.assert_array_equal(y, y_ref)
