"""``jaxnn.model``: the bundled datasets record their scaling, a run of one is a model
``load_run`` restores, and ``model.json`` problems are one clear ValueError.

The references: scikit-learn's raw data, scaled by the recorded statistics, must give
the loader's own arrays (bitwise, where the loader computes in float64); a run's test
accuracy recomputed from ``load_run``'s predictions on the raw rows.
"""

import json
import os
import re

import numpy as np
import pytest

import jaxnn
from jaxnn import data, model
from tests.test_cli import run
from tests.test_data import small_mnist, write_idx_dir


def raw(name):
    import sklearn.datasets

    loader = {
        "digits": sklearn.datasets.load_digits,
        "breast_cancer": sklearn.datasets.load_breast_cancer,
        "diabetes": lambda **k: sklearn.datasets.load_diabetes(scaled=False, **k),
    }[name]
    return loader(return_X_y=True)


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "diabetes"])
def test_a_bundled_dataset_records_the_scaling_of_its_arrays(name):
    ds = data.load(name)
    p = ds.preprocessing
    X, y = raw(name)
    strata = data.target_deciles(y) if name == "diabetes" else y
    train, test = data.stratified_split(strata, 0.2, 0)
    assert len(p.feature_names) == len(p.feature_mean) == len(p.feature_std) == X.shape[1]
    for idx, arrays in ((train, ds.X_train), (test, ds.X_test)):
        scaled = ((X[idx] - p.feature_mean) / p.feature_std).T
        np.testing.assert_array_equal(np.asarray(scaled, np.float32), arrays)
    if name == "diabetes":
        assert p.classes is None and p.target == "progression"
        scaled = (y[test] - p.target_mean) / p.target_std
        np.testing.assert_array_equal(np.asarray(scaled, np.float32), ds.Y_test[0])
    else:
        assert p.target_mean is None
    if name == "digits":
        assert p.feature_names[:2] == ("pixel_0_0", "pixel_0_1") and p.classes == tuple(range(10))
        assert len(set(p.feature_mean)) == len(set(p.feature_std)) == 1  # one over all pixels
    if name == "breast_cancer":
        assert p.classes == ("malignant", "benign") and p.feature_names[0] == "mean radius"


def test_mnist_records_its_scaling(tmp_path):
    arrays = small_mnist(m_train=40)
    ds = data.mnist(write_idx_dir(tmp_path / "mnist", arrays))
    p = ds.preprocessing
    assert p.feature_names[:4] == ("pixel_0_0", "pixel_0_1", "pixel_0_2", "pixel_1_0")
    X = arrays["x_test"].reshape(10, 12).astype(np.float64)
    # the loader computes in float32, the recorded statistics in float64
    np.testing.assert_allclose((X - p.feature_mean) / p.feature_std, ds.X_test.T, rtol=1e-6)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "digits"
    argv = ["--epochs", "2", "--hidden", "8", "--batch-size", "64", "--out", str(out)]
    status, _, stderr = run("train", *argv)
    assert status == 0, stderr
    return out


@pytest.mark.slow
def test_a_digits_run_is_a_model_of_raw_pixels(digits_run):
    record = model.read_record(digits_run)
    assert record["data"] == {"dataset": "digits", "scaling": "one mean and std over all pixels"}
    assert record["split"] == {
        "seed": 0, "test_fraction": 0.2, "validation_fraction": 0.0, "test_file": None,
        "m_train": 1438, "m_val": 0, "m_test": 359,
    }  # fmt: skip
    assert record["target"] == {"name": "digit", "classes": list(range(10))}
    X, y = raw("digits")
    _, test = data.stratified_split(y, 0.2, 0)
    m = jaxnn.load_run(digits_run)
    assert m.epoch == 2 and m.feature_names[-1] == "pixel_7_7"
    accuracy = np.mean(m.predict(X[test]) == y[test])
    reported = json.loads((digits_run / "metrics.json").read_text())["test_accuracy"]
    # the run saw float32 pixels, load_run standardises in float64: at most one row apart
    assert abs(accuracy - reported) <= 1 / len(test)


def test_load_run_is_lazy_and_public():
    assert jaxnn.load_run is model.load_run and "load_run" in jaxnn.__all__


def digits_record():
    """model.json of a digits run, as ``jaxnn train`` makes it (``model_record``), without
    training one: the digits run itself is the slow test's above."""
    net = jaxnn.Network((64, 8, 10), ("relu", "softmax"), "cross_entropy")
    split = {"seed": 0, "test_fraction": 0.2, "validation_fraction": 0.0, "test_file": None,
             "m_train": 1438, "m_val": 0, "m_test": 359}  # fmt: skip
    optimizer = {"name": "adam", "learning_rate": 1e-3}
    preprocessing = data.load("digits").preprocessing
    return model.model_record(
        net, np.float64, optimizer, preprocessing, "classification", {"dataset": "digits"}, split
    )


def test_model_json_problems_are_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="is not a directory: not a jaxnn run"):
        jaxnn.load_run(tmp_path / "none")
    with pytest.raises(ValueError, match=r"holds no model\.json: not a jaxnn run"):
        jaxnn.load_run(tmp_path)
    record = json.loads(json.dumps(digits_record()))
    for change, words in [
        ({"format": "other"}, 'is not a jaxnn model (no "format": "jaxnn-model")'),
        ({"version": 2}, "has version 2; this jaxnn reads version 1"),
    ]:
        (tmp_path / "model.json").write_text(json.dumps({**record, **change}))
        with pytest.raises(ValueError, match=re.escape(words)):
            jaxnn.load_run(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps(record))
    with pytest.raises(ValueError, match=r"has no checkpoint yet.*jaxnn train --resume --out"):
        jaxnn.load_run(tmp_path)
    os.remove(tmp_path / "model.json")


def test_best_epoch_is_the_first_lowest_validation_cost():
    history = [{"epoch": e, "val_cost": c} for e, c in enumerate([3.0, 1.0, 2.0, 1.0], 1)]
    assert model.best_epoch(history) == 2
    assert model.best_epoch([{"epoch": 1, "test_cost": 1.0}]) is None
