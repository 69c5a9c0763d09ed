"""A user's own data through the command line: ``jaxnn train --data FILE``, then
``jaxnn predict``, ``evaluate``, ``export`` and ``jaxnn.load_run`` on the run.

Real CSV files: scikit-learn's wine data with its classes as strings (three classes:
softmax), its first two classes alone (two: one sigmoid unit), and diabetes (a
regression). Runs are in this process (``cli.main``, float64, as tests/test_cli.py
does); the one subprocess test runs the real commands in float32.

The references are independent of the code under test: the split is drawn again with
``jaxnn.tabular.split_indices`` and standardised with NumPy; the test metrics the run
reports are recomputed from ``load_run``'s predictions on the raw rows; onnxruntime
runs the exported graph; scikit-learn's MLPClassifier trains on the same split.
"""

import contextlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import warnings

import jax
import numpy as np
import pytest

import jaxnn
from jaxnn import checkpoint, optim, tabular, train
from jaxnn.cli import prepare
from tests.test_cli import run, snapshot

pd = pytest.importorskip("pandas")
ort = pytest.importorskip("onnxruntime")

WINE_CLASSES = ("barbera", "barolo", "grignolino")  # sorted, as the run names them
SMALL = ["--hidden", "8", "--batch-size", "16", "--checkpoint-every", "0"]


def wine_frame():
    from sklearn.datasets import load_wine

    frame = load_wine(as_frame=True).frame
    names = np.array(["barolo", "grignolino", "barbera"])  # scikit-learn's classes 0, 1, 2
    frame["cultivar"] = names[frame.pop("target").to_numpy()]
    return frame


def diabetes_frame():
    from sklearn.datasets import load_diabetes

    frame = load_diabetes(as_frame=True, scaled=False).frame
    return frame.rename(columns={"target": "progression"})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """wine.csv (3 string classes, target last), wine2.csv (2 classes), diabetes.csv."""
    directory = tmp_path_factory.mktemp("data")
    wine = wine_frame()
    wine.to_csv(directory / "wine.csv", index=False)
    wine[wine.cultivar != "barbera"].to_csv(directory / "wine2.csv", index=False)
    diabetes_frame().to_csv(directory / "diabetes.csv", index=False)
    return directory


def train_run(out, data, *flags):
    status, stdout, stderr = run("train", "--data", str(data), *flags, "--out", str(out))
    assert status == 0, stderr
    return stdout


def read_json(path):
    with open(path) as f:
        return json.load(f)


def split_of(files, name="wine.csv", seed=0, fraction=0.2):
    """The run's split, drawn again: (table, train indices, test indices)."""
    table = tabular.read_table(files / name)
    train_idx, test_idx = tabular.split_indices(table, fraction, seed)
    return table, train_idx, test_idx


@pytest.fixture(scope="module")
def wine_run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "wine"
    stdout = train_run(out, files / "wine.csv", *SMALL, "--epochs", "6", "--seed", "3")
    return out, stdout


# --- train: the run directory is a model ------------------------------------------------


@pytest.mark.slow
def test_train_on_a_csv_writes_a_model(files, wine_run):
    out, stdout = wine_run
    assert re.fullmatch(
        rf"wine: test accuracy [01]\.\d{{4}} after 6 epochs in \d+\.\d s -> "
        rf"{re.escape(str(out))}\n",
        stdout,
    )
    assert sorted(os.listdir(out)) == [
        "checkpoints", "config.json", "curves.png", "metrics.json", "model.json"
    ]  # fmt: skip
    model = read_json(out / "model.json")
    table, train_idx, test_idx = split_of(files, seed=3)
    X = table.X[train_idx]
    assert model["format"] == "jaxnn-model" and model["version"] == 1
    assert model["task"] == "classification"
    assert model["network"] == {
        "sizes": [13, 8, 3], "activations": ["relu", "softmax"], "loss": "cross_entropy"
    }  # fmt: skip
    assert model["features"]["names"] == list(wine_frame().columns[:-1])
    np.testing.assert_array_equal(model["features"]["mean"], X.mean(axis=0))
    np.testing.assert_array_equal(model["features"]["std"], X.std(axis=0))
    assert model["target"] == {"name": "cultivar", "classes": list(WINE_CLASSES)}
    assert model["data"] == {"file": str(files / "wine.csv"), "test_file": None}
    assert model["split"] == {
        "seed": 3, "test_fraction": 0.2, "validation_fraction": 0.0, "test_file": None,
        "m_train": len(train_idx), "m_val": 0, "m_test": len(test_idx),
    }  # fmt: skip
    assert model["selects"] == "last" and model["dtype"] == "float64"

    config = read_json(out / "config.json")
    assert config["settings"]["dataset"] is None
    assert config["settings"]["data"] == str(files / "wine.csv")
    assert config["schedule"] == {"name": "constant", "peak_value": 1e-3, "steps": 6 * 8}
    metrics = read_json(out / "metrics.json")
    assert metrics["classes"] == list(WINE_CLASSES) and metrics["split"] == model["split"]
    assert metrics["best_epoch"] is None and metrics["stopped_early"] is False
    assert set(metrics["history"][0]) == {
        "epoch", "train_cost", "test_cost", "test_accuracy", "train_accuracy"
    }  # fmt: skip


@pytest.mark.slow
def test_load_run_reproduces_the_runs_test_accuracy_from_raw_rows(files, wine_run):
    """The preprocessing model.json records is the training's: predictions on the raw
    test rows give exactly the test accuracy the run measured on its arrays."""
    out, _ = wine_run
    table, _, test_idx = split_of(files, seed=3)
    model = jaxnn.load_run(out)
    assert model.epoch == 6 and model.classes == WINE_CLASSES and model.task == "classification"
    assert model.feature_names == tuple(wine_frame().columns[:-1])
    predicted = model.predict(table.X[test_idx])
    truth = np.asarray(WINE_CLASSES)[table.y[test_idx]]
    assert np.mean(predicted == truth) == read_json(out / "metrics.json")["test_accuracy"]
    proba = model.predict_proba(table.X[test_idx])
    assert proba.shape == (len(test_idx), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-12)
    np.testing.assert_array_equal(np.asarray(WINE_CLASSES)[proba.argmax(axis=1)], predicted)


@pytest.mark.slow
def test_load_run_takes_a_dataframe_by_column_name(files, wine_run):
    model = jaxnn.load_run(wine_run[0])
    frame = wine_frame()
    shuffled = frame[list(reversed(frame.columns))]  # the target first, features reversed
    np.testing.assert_array_equal(
        model.predict_proba(shuffled), model.predict_proba(frame.iloc[:, :-1].to_numpy())
    )
    with pytest.raises(tabular.TableError, match="no feature column 'proline'"):
        model.predict(frame.drop(columns="proline"))


@pytest.mark.slow
def test_load_run_restores_another_epoch(wine_run):
    out = wine_run[0]  # 6 epochs, the newest 3 saved
    first, last = jaxnn.load_run(out, epoch=4), jaxnn.load_run(out)
    assert (first.epoch, last.epoch) == (4, 6)
    assert not np.array_equal(first.params[0]["W"], last.params[0]["W"])
    with pytest.raises(ValueError, match=r"no checkpoint of epoch 7 .* saved: \[4, 5, 6\]"):
        jaxnn.load_run(out, epoch=7)


@pytest.mark.slow
def test_two_classes_train_one_sigmoid_unit(files, tmp_path):
    out = tmp_path / "two"
    train_run(out, files / "wine2.csv", *SMALL, "--epochs", "3")
    model = jaxnn.load_run(out)
    assert model.net.sizes[-1] == 1 and model.net.loss == "binary_cross_entropy"
    assert model.classes == ("barolo", "grignolino")
    table, _, test_idx = split_of(files, "wine2.csv")
    proba = model.predict_proba(table.X[test_idx])
    A = model.outputs(table.X[test_idx])[:, 0]  # p = P(grignolino)
    np.testing.assert_array_equal(proba, np.stack([1 - A, A], axis=1))
    predicted = model.predict(table.X[test_idx])
    np.testing.assert_array_equal(predicted, np.where(A > 0.5, "grignolino", "barolo"))
    truth = np.asarray(model.classes)[table.y[test_idx]]
    assert np.mean(predicted == truth) == read_json(out / "metrics.json")["test_accuracy"]


@pytest.fixture(scope="module")
def diabetes_run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "diabetes"
    flags = ["--hidden", "16", "--batch-size", "32", "--epochs", "5", "--learning-rate", "0.01"]
    train_run(out, files / "diabetes.csv", *flags)
    return out


@pytest.mark.slow
def test_regression_predicts_on_the_targets_scale(files, diabetes_run):
    out = diabetes_run
    model = jaxnn.load_run(out)
    table, train_idx, test_idx = split_of(files, "diabetes.csv")
    y = table.y[train_idx]
    record = read_json(out / "model.json")
    assert record["task"] == "regression" and record["network"]["loss"] == "mse"
    assert record["target"] == {"name": "progression", "mean": y.mean(), "std": y.std()}
    predicted = model.predict(table.X[test_idx])
    assert predicted.shape == (len(test_idx),)
    np.testing.assert_allclose(
        predicted, model.outputs(table.X[test_idx])[:, 0] * y.std() + y.mean(), rtol=1e-14
    )
    truth = table.y[test_idx]
    r2 = 1 - np.sum((predicted - truth) ** 2) / np.sum((truth - truth.mean()) ** 2)
    np.testing.assert_allclose(r2, read_json(out / "metrics.json")["test_r2"], rtol=1e-10)
    with pytest.raises(ValueError, match="predict_proba is for classification"):
        model.predict_proba(table.X[:2])


# --- predict, evaluate, export ---------------------------------------------------------


def test_predict_writes_a_csv_matching_columns_by_name(files, wine_run, tmp_path):
    out = wine_run[0]
    frame = wine_frame()
    shuffled = tmp_path / "rows.csv"
    frame[list(reversed(frame.columns))].to_csv(shuffled, index=False)  # target first
    predictions = tmp_path / "p.csv"
    status, stdout, stderr = run("predict", str(out), str(shuffled), "--out", str(predictions))
    assert status == 0, stderr
    assert stdout == f"178 predictions of {out} (epoch 6) -> {predictions}\n"
    written = pd.read_csv(predictions)
    assert list(written.columns) == ["prediction"]
    model = jaxnn.load_run(out)
    np.testing.assert_array_equal(written.prediction, model.predict(frame))

    status, _, stderr = run("predict", str(out), str(shuffled), "--out", str(predictions))
    assert (status, stderr) == (
        2, f"jaxnn: error: --out {predictions} already exists; give --force to overwrite it\n"
    )  # fmt: skip
    args = ["predict", str(out), str(files / "wine.csv"), "--out", str(predictions), "--proba"]
    assert run(*args, "--force")[0] == 0
    written = pd.read_csv(predictions)
    assert list(written.columns) == ["prediction", *(f"proba_{c}" for c in WINE_CLASSES)]
    np.testing.assert_allclose(written.iloc[:, 1:], model.predict_proba(frame), rtol=1e-15)


def test_predict_with_a_missing_column_is_one_line_and_writes_nothing(files, wine_run, tmp_path):
    rows = tmp_path / "rows.csv"
    wine_frame().drop(columns="hue").to_csv(rows, index=False)
    before = snapshot(tmp_path)
    status, stdout, stderr = run("predict", str(wine_run[0]), str(rows), "--out", f"{tmp_path}/p")
    assert (status, stdout) == (2, "")
    assert stderr.startswith(f"jaxnn: error: {rows}: no feature column 'hue'; the columns are ")
    assert stderr.count("\n") == 1 and snapshot(tmp_path) == before


def test_evaluate_prints_accuracy_and_json(files, wine_run):
    out = wine_run[0]
    status, stdout, _ = run("evaluate", str(out), str(files / "wine.csv"), "--json")
    assert status == 0
    result = json.loads(stdout)
    model = jaxnn.load_run(out)
    frame = wine_frame()
    accuracy = np.mean(model.predict(frame) == frame.cultivar.to_numpy())
    assert result == {"accuracy": accuracy, "m": 178, "epoch": 6}
    status, stdout, _ = run("evaluate", str(out), str(files / "wine.csv"))
    assert (
        stdout == f"accuracy {accuracy:.4f} on 178 rows of {files / 'wine.csv'} ({out}, epoch 6)\n"
    )


@pytest.mark.slow
def test_evaluate_regression_gives_r2_and_rmse(files, diabetes_run):
    status, stdout, _ = run("evaluate", str(diabetes_run), str(files / "diabetes.csv"), "--json")
    assert status == 0
    result = json.loads(stdout)
    frame = diabetes_frame()
    predicted = jaxnn.load_run(diabetes_run).predict(frame)
    y = frame.progression.to_numpy()
    np.testing.assert_allclose(result["rmse"], np.sqrt(np.mean((predicted - y) ** 2)))
    np.testing.assert_allclose(
        result["r2"], 1 - np.sum((predicted - y) ** 2) / np.sum((y - y.mean()) ** 2)
    )
    assert result["m"] == 442


def test_evaluate_names_an_unknown_class(files, wine_run, tmp_path):
    frame = wine_frame()
    frame.loc[4, "cultivar"] = "merlot"
    labelled = tmp_path / "l.csv"
    frame.to_csv(labelled, index=False)
    status, _, stderr = run("evaluate", str(wine_run[0]), str(labelled))
    assert status == 2 and stderr.count("\n") == 1
    assert "column 'cultivar', line 6: class 'merlot' was not among" in stderr


@pytest.mark.slow
@pytest.mark.parametrize("which", ["wine", "diabetes"])
def test_export_equals_load_run_under_onnxruntime(files, wine_run, diabetes_run, tmp_path, which):
    out = wine_run[0] if which == "wine" else diabetes_run
    path = tmp_path / "model.onnx"
    status, stdout, _ = run("export", str(out), str(path))
    assert status == 0 and f"-> {path}: input (m, " in stdout
    model = jaxnn.load_run(out)
    frame = wine_frame() if which == "wine" else diabetes_frame()
    X = frame[list(model.feature_names)].to_numpy(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"input": X})
    if which == "wine":
        np.testing.assert_allclose(got, model.predict_proba(X), atol=1e-5, rtol=0)
    else:  # values of order 150 in float32: 1e-5 of the target's scale
        np.testing.assert_allclose(got[:, 0], model.predict(X), atol=1e-5 * 77, rtol=0)
    status, _, stderr = run("export", str(out), str(path))
    assert status == 2 and "already exists; give --force" in stderr


# --- bad files: one line, exit status 2, nothing written --------------------------------

BAD_FILES = {
    # name: (file text, flags, words of the one line)
    "empty-cell": ("a,b,y\n1,2,x\n3,,y\n5,6,x\n7,8,y\n", [], "column 'b', line 3: empty cell"),
    "not-a-number": ("a,b,y\n1,2,x\n3,abc,y\n5,6,x\n7,8,y\n", [], "'abc' is not a number"),
    "nan": ("a,b,y\n1,2,x\n3,NaN,y\n5,6,x\n7,8,y\n", [], "column 'b', line 3: NaN"),
    "no-target": ("a,b,y\n1,2,x\n3,4,y\n", ["--target", "z"], "no target column 'z'"),
    "one-example-class": ("a,b,y\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n9,1,z\n", [], "'z' (1 example)"),
    "constant-features": ("a,b,y\n1,2,x\n1,2,y\n1,2,x\n1,2,y\n", [], "every feature is constant"),
    "empty": ("", [], "the file is empty"),
    "header-only": ("a,b,y\n", [], "no data rows"),
    "ragged": ("a,b,y\n1,2,x\n3,4\n", [], "line 3: 2 cells where the header has 3"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_FILES))
def test_a_bad_file_is_one_line_and_nothing_is_written(tmp_path, monkeypatch, case):
    text, flags, words = BAD_FILES[case]
    path = tmp_path / "bad.csv"
    path.write_text(text)
    monkeypatch.chdir(tmp_path)  # a default --out would land here
    before = snapshot(tmp_path)
    status, stdout, stderr = run("train", "--data", str(path), *flags, "--epochs", "1")
    assert (status, stdout) == (2, "")
    assert stderr.startswith(f"jaxnn: error: {path}") and stderr.count("\n") == 1, stderr
    assert words in stderr
    assert snapshot(tmp_path) == before and not os.path.exists(tmp_path / "runs")


USAGE = [
    (["--data", "{wine}", "--dataset", "digits"],
     "--dataset digits is bundled and takes no --data; to train on your own file {wine}, "
     "leave out --dataset"),
    (["--data", "{wine}", "--dataset", "mnist"],
     "--dataset mnist takes a directory of the MNIST files or mnist.npz; to train on your own "
     "file {wine}, leave out --dataset"),
    (["--data", "{tmp}/nowhere.csv"], "{tmp}/nowhere.csv: no such file"),
    (["--data", "{tmp}/wine.txt"], "unknown file type '.txt'"),
    (["--data", "{wine}", "--patience", "3"],
     "--patience stops on the validation cost: give --validation-fraction F too"),
    (["--target", "x"], "--target is for data of your own (--data FILE); digits has its own"),
    (["--data", "{wine}", "--test", "{wine}", "--test-fraction", "0.3"],
     "give --test FILE (a test part of its own) or --test-fraction F"),
    (["--data", "{wine}", "--test-fraction", "1"], "--test-fraction must be in (0, 1), got 1.0"),
    (["--data", "{wine}", "--validation-fraction", "0.001"],
     "--validation-fraction 0.001 leaves the validation part empty"),
    (["--data", "{wine}", "--weight-decay", "-1"], "--weight-decay must be a finite number >= 0"),
    (["--data", "{wine}", "--schedule", "step"], "unknown schedule 'step'; valid: constant, "),
    (["--data", "{wine}", "--task", "regression"], "which cannot be a regression target"),
    (["--data", "{wine}", "--batch-size", "200"], "batch size 200 is larger than the training"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), USAGE, ids=[" ".join(a) for a, _ in USAGE])
def test_usage_errors_are_one_line(files, tmp_path, monkeypatch, argv, message):
    names = {"{wine}": str(files / "wine.csv"), "{tmp}": str(tmp_path)}
    for k, v in names.items():
        argv = [a.replace(k, v) for a in argv]
        message = message.replace(k, v)
    monkeypatch.chdir(tmp_path)
    status, stdout, stderr = run("train", *argv, "--epochs", "1")
    assert (status, stdout) == (2, "") and stderr.count("\n") == 1, stderr
    assert message in stderr
    assert os.listdir(tmp_path) == []


# --- resuming: always with --resume, whatever state a kill left ---------------------------


@pytest.mark.slow
def test_resume_on_a_new_or_empty_directory_starts_fresh(files, tmp_path, wine_run):
    for out in (tmp_path / "new", tmp_path / "empty"):
        if out.name == "empty":
            out.mkdir()
        args = ["--data", str(files / "wine.csv"), *SMALL, "--epochs", "6", "--seed", "3"]
        status, stdout, stderr = run("train", "--resume", *args, "--out", str(out))
        assert status == 0 and "after 6 epochs" in stdout, stderr
        assert (
            read_json(out / "metrics.json")["history"]
            == read_json(wine_run[0] / "metrics.json")["history"]
        )
    # killed before its first save: config.json there, no checkpoint, no model.json
    out = tmp_path / "unsaved"
    shutil.copytree(wine_run[0], out)
    for name in ("checkpoints", "metrics.json", "curves.png", "model.json"):
        shutil.rmtree(out / name) if name == "checkpoints" else os.remove(out / name)
    status, stdout, stderr = run("train", "--resume", "--out", str(out))
    assert status == 0 and "after 6 epochs" in stdout, stderr
    assert (out / "model.json").read_text() == (wine_run[0] / "model.json").read_text()
    history = lambda d: read_json(d / "metrics.json")["history"]
    assert history(out) == history(wine_run[0])
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    status, _, stderr = run("train", "--resume", "--out", str(tmp_path / "mine"))
    assert status == 2 and "holds no run to resume (no config.json) and is not empty" in stderr


@pytest.mark.slow
@pytest.mark.parametrize(
    "lost", [("metrics.json",), ("curves.png",), ("metrics.json", "curves.png", "model.json")]
)
def test_resume_completes_a_complete_run(wine_run, tmp_path, lost):
    out = tmp_path / "run"
    shutil.copytree(wine_run[0], out)
    kept = {f: (out / f).read_bytes() for f in ("metrics.json", "curves.png", "model.json")}
    for name in lost:
        os.remove(out / name)
    status, stdout, stderr = run("train", "--resume", "--out", str(out))
    assert status == 0, stderr
    written = [f for f in ("metrics.json", "curves.png") if f in lost]
    assert (
        stdout == f"{out}: already complete, 6 epochs; wrote the missing {' and '.join(written)}\n"
    )
    assert (out / "model.json").read_bytes() == kept["model.json"]
    metrics, before = read_json(out / "metrics.json"), json.loads(kept["metrics.json"])
    assert metrics["history"] == before["history"] and metrics["finished"] is True
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    status, stdout, _ = run("train", "--resume", "--out", str(out))  # again: nothing to do
    assert (status, stdout) == (0, f"{out}: already complete, 6 epochs\n")


@pytest.mark.slow
def test_resume_refuses_a_changed_file(files, wine_run, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(wine_run[0], out)
    frame = wine_frame()
    frame.loc[0, "alcohol"] += 1
    changed = tmp_path / "wine.csv"
    frame.to_csv(changed, index=False)
    before = snapshot(out)
    status, _, stderr = run(
        "train", "--resume", "--data", str(changed), "--epochs", "7", "--out", str(out)
    )
    assert status == 2 and stderr.count("\n") == 1
    assert "the data is not what the run" in stderr and "'features' differs" in stderr
    assert snapshot(out) == before


# --- early stopping, the best epoch kept and restored ------------------------------------

EARLY = ["--hidden", "32", "--learning-rate", "0.05", "--validation-fraction", "0.2"]


def best_of(history):
    costs = [r["val_cost"] for r in history]
    return int(np.argmin(costs)) + 1


@pytest.fixture(scope="module")
def early_run(files, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "early"
    flags = [*EARLY, "--patience", "3", "--epochs", "40", "--checkpoint-every", "0"]
    stdout = train_run(out, files / "wine.csv", *flags)
    return out, stdout


@pytest.mark.slow
def test_early_stopping_records_and_keeps_the_best_epoch(early_run):
    out, stdout = early_run
    metrics = read_json(out / "metrics.json")
    history = metrics["history"]
    best = best_of(history)
    assert metrics["best_epoch"] == best and metrics["stopped_early"] is True
    assert metrics["epochs_done"] == len(history) == best + 3 < 40  # patience 3
    assert metrics["test_accuracy"] == history[best - 1]["test_accuracy"]  # the model's epoch
    assert {"val_cost", "val_accuracy", "train_accuracy"} <= set(history[0])
    assert f"at its best epoch on validation, {best} of {best + 3} (stopped early)" in stdout
    saved = sorted(map(int, os.listdir(out / "checkpoints")))
    assert saved == [best, best + 1, best + 2, best + 3]  # the newest 3, and the best
    model = jaxnn.load_run(out)
    assert model.epoch == best and read_json(out / "model.json")["selects"] == "best"
    assert jaxnn.load_run(out, epoch=best + 3).epoch == best + 3
    split = read_json(out / "model.json")["split"]
    assert split["m_val"] > 0 and split["validation_fraction"] == 0.2


@pytest.mark.slow  # two early-stopping runs of jaxnn train, this one and early_run's
def test_a_best_epoch_never_due_for_a_save_is_saved_at_the_next(files, early_run, tmp_path):
    """Saving at most hourly, only the last epoch is due; the best is saved beside it,
    from the params kept since, and equals the run saving every epoch bit for bit."""
    out = tmp_path / "hourly"
    flags = [*EARLY, "--patience", "3", "--epochs", "40", "--checkpoint-every", "3600"]
    train_run(out, files / "wine.csv", *flags)
    best = read_json(out / "metrics.json")["best_epoch"]
    assert sorted(map(int, os.listdir(out / "checkpoints"))) == [best, best + 3]
    a, b = jaxnn.load_run(out), jaxnn.load_run(early_run[0])
    assert a.epoch == b.epoch == best
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)


@pytest.mark.slow
def test_resume_with_early_stopping_is_bitwise(files, early_run, tmp_path):
    whole = read_json(early_run[0] / "metrics.json")
    best = whole["best_epoch"]
    out = tmp_path / "split"
    flags = [*EARLY, "--patience", "3", "--checkpoint-every", "3600"]
    train_run(out, files / "wine.csv", *flags, "--epochs", str(best + 1))  # best not due
    status, stdout, stderr = run("train", "--resume", "--epochs", "40", "--out", str(out))
    assert status == 0 and "(stopped early)" in stdout, stderr
    assert read_json(out / "metrics.json")["history"] == whole["history"]
    a, b = jaxnn.load_run(out), jaxnn.load_run(early_run[0])
    assert a.epoch == b.epoch == best
    for x, y in zip(jax.tree.leaves(a.params), jax.tree.leaves(b.params), strict=True):
        np.testing.assert_array_equal(x, y)
    status, stdout, _ = run("train", "--resume", "--epochs", "40", "--out", str(out))
    assert status == 0 and stdout.startswith(f"{out}: already complete, {best + 3} epochs")


# --- weight decay and the schedule: the run is fit's, with optax's schedule ---------------


@pytest.mark.slow
@pytest.mark.parametrize("schedule", ["cosine", "warmup-cosine"])
def test_weight_decay_and_schedule_are_fits(files, tmp_path, schedule):
    out = tmp_path / schedule
    flags = [*SMALL, "--epochs", "3", "--weight-decay", "0.5", "--schedule", schedule]
    train_run(out, files / "diabetes.csv", *flags)
    config = read_json(out / "config.json")
    steps = 3 * (len(split_of(files, "diabetes.csv")[1]) // 16)
    expected = {"name": schedule, "peak_value": 1e-3, "steps": steps, "end_value": 0.0}
    if schedule == "warmup-cosine":
        expected["warmup_steps"] = round(0.05 * steps)
    assert config["schedule"] == expected
    assert config["settings"]["weight_decay"] == 0.5
    assert read_json(out / "metrics.json")["schedule"] == expected

    import optax

    settings = config["settings"]
    data = prepare.load(settings)
    net = data.dataset.network((8,), "relu")
    if schedule == "cosine":
        rate = optax.cosine_decay_schedule(1e-3, steps)
    else:
        rate = optax.warmup_cosine_decay_schedule(0.0, 1e-3, expected["warmup_steps"], steps)
    result = train.fit(
        net, optim.adam(rate), data.parts, 3, 16, jax.random.key(0), weight_decay=0.5
    )
    restored = jaxnn.load_run(out)
    for x, y in zip(jax.tree.leaves(restored.params), jax.tree.leaves(result.params), strict=True):
        np.testing.assert_array_equal(x, y)
    status, _, stderr = run("train", "--resume", "--epochs", "5", "--out", str(out))
    assert status == 2 and "schedule runs" in stderr


# --- the same split as scikit-learn's MLPClassifier ---------------------------------------


@pytest.mark.slow
def test_accuracy_beside_scikit_learns_mlp_on_the_same_split(files, tmp_path):
    """jaxnn and scikit-learn's MLPClassifier, the same network and optimizer (13-16-3,
    relu, Adam 1e-3, batch 16, 60 epochs, no weight decay), on the same split and the
    same standardisation: within 6 points of each other on the 36 test rows (one row is
    2.8 points). Measured: see the report (both about 0.94-1.0)."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    out = tmp_path / "run"
    train_run(
        out, files / "wine.csv", "--hidden", "16", "--epochs", "60", "--checkpoint-every", "3600"
    )
    table, train_idx, test_idx = split_of(files)
    model = jaxnn.load_run(out)
    ours = np.mean(model.predict(table.X[test_idx]) == np.asarray(WINE_CLASSES)[table.y[test_idx]])
    mean, std = table.X[train_idx].mean(axis=0), table.X[train_idx].std(axis=0)
    scaled = lambda X: (X - mean) / std
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier(
            (16,), learning_rate_init=1e-3, batch_size=16, alpha=0.0, max_iter=60,
            random_state=0, tol=0.0, n_iter_no_change=60,
        ).fit(scaled(table.X[train_idx]), table.y[train_idx])  # fmt: skip
    theirs = clf.score(scaled(table.X[test_idx]), table.y[test_idx])
    print(f"wine test accuracy: jaxnn {ours:.4f}, scikit-learn MLPClassifier {theirs:.4f}")
    assert ours >= 0.9 and abs(ours - theirs) <= 0.06


# --- the real commands, in float32 -------------------------------------------------------


# ``python -m jaxnn`` run once per command line given after the script, in this one
# process: prints each command's exit status and stdout as a JSON line.
COMMANDS = (
    "import contextlib, io, json, runpy, shlex, sys\n"
    "for command in sys.argv[1:]:\n"
    "    sys.argv = ['jaxnn', *shlex.split(command)]\n"
    "    out = io.StringIO()\n"
    "    with contextlib.redirect_stdout(out):\n"
    "        try:\n"
    "            runpy.run_module('jaxnn', run_name='__main__')\n"
    "            status = None\n"
    "        except SystemExit as e:\n"
    "            status = e.code\n"
    "    print(json.dumps([status, out.getvalue()]), flush=True)\n"
)


@pytest.mark.slow
def test_the_five_commands_as_processes(files, tmp_path):
    """train, predict, evaluate and export as ``python -m jaxnn`` runs them (float32), one
    after another in one process, and load_run in a fresh interpreter: ONNX equals
    predict_proba within 1e-5."""
    shutil.copy(files / "wine.csv", tmp_path)
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    commands = [
        "train --data wine.csv --hidden 8 --epochs 5 --validation-fraction 0.2 --out runs/wine",
        "predict runs/wine wine.csv --out predictions.csv --proba",
        "evaluate runs/wine wine.csv --json",
        "export runs/wine wine.onnx",
    ]
    result = subprocess.run(
        [sys.executable, "-c", COMMANDS, *commands],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == len(commands), result.stdout
    outputs = []
    for command, line in zip(commands, lines, strict=True):
        status, stdout = json.loads(line)
        assert status == 0, (command, result.stderr)
        outputs.append(stdout)
    assert read_json(tmp_path / "runs/wine/model.json")["dtype"] == "float32"
    assert 0 <= json.loads(outputs[2])["accuracy"] <= 1
    script = (
        "import numpy as np, onnxruntime as ort, pandas as pd, jaxnn\n"
        "model = jaxnn.load_run('runs/wine')\n"
        "rows = pd.read_csv('wine.csv')\n"
        "X = rows[list(model.feature_names)].to_numpy(np.float32)\n"
        "(got,) = ort.InferenceSession('wine.onnx').run(None, {'input': X})\n"
        "print(float(np.abs(got - model.predict_proba(rows)).max()))\n"
        "written = pd.read_csv('predictions.csv')\n"
        "assert (written.prediction == model.predict(rows)).all()\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) <= 1e-5


def test_checkpoints_keep_an_epoch_beyond_the_newest(tmp_path):
    """``Checkpoints.keep``: the kept epoch survives the newest-3 retention; another keep
    lets it go at the next save. A read-only open lists and restores, and cannot save."""
    params = [{"W": np.ones((2, 3)), "b": np.zeros((2, 1))}]
    with checkpoint.Checkpoints(tmp_path / "c") as ckpts:
        ckpts.save(1, params)
        ckpts.keep(2)
        for epoch in range(2, 7):
            ckpts.save(epoch, params)
        ckpts.wait()
        assert ckpts.epochs() == [2, 4, 5, 6]
        ckpts.keep(5)
        ckpts.save(7, params)
        ckpts.wait()
        assert ckpts.epochs() == [5, 6, 7]
    with checkpoint.Checkpoints(tmp_path / "c", read_only=True) as ckpts:
        assert ckpts.restore(params, epoch=5).epoch == 5
        with pytest.raises(ValueError, match="opened read-only"):
            ckpts.save(8, params)
    with pytest.raises(ValueError, match="no checkpoint directory"):
        checkpoint.Checkpoints(tmp_path / "none", read_only=True)


# --- docs/own-data.md runs as written ------------------------------------------------------


@pytest.mark.slow
def test_the_docs_own_data_md_runs_as_written(tmp_path, monkeypatch):
    """docs/own-data.md's blocks in order, in a fresh directory: the Python that writes the
    CSVs; each ``jaxnn`` command of the shell block (in this process, float64), printing the
    lines the doc shows after it (numbers aside); the load_run example, likewise."""
    from tests.test_docs import ROOT, code_blocks, jaxnn_commands, shown_output, skeleton

    doc = ROOT / "docs" / "own-data.md"
    python, shell = code_blocks(doc, ("python",)), code_blocks(doc, ("bash",))
    assert len(python) == 2 and len(shell) == 1
    monkeypatch.chdir(tmp_path)
    exec(compile(python[0], f"{doc}, python block 1", "exec"), {"__name__": "__doc__"})
    printed = []
    for argv in jaxnn_commands(shell[0]):
        status, stdout, stderr = run(*argv)
        assert status == 0, (argv, stderr)
        printed += stdout.splitlines()
    text = doc.read_text()
    shown = text.split("```bash\n", 1)[1].split("```text\n", 1)[1].split("```", 1)[0]
    assert [skeleton(line) for line in printed] == [skeleton(s) for s in shown.splitlines()]

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(python[1], f"{doc}, python block 2", "exec"), {"__name__": "__doc__"})
    shown = shown_output("docs/own-data.md", 1)
    flat = lambda line: skeleton(line).replace(" ", "")  # NumPy pads a 0. as it likes
    assert [flat(line) for line in out.getvalue().splitlines()] == [
        flat(s) for s in shown.splitlines()
    ]
    model = jaxnn.load_run("runs/wine")
    (got,) = ort.InferenceSession("wine.onnx").run(
        None, {"input": pd.read_csv("wine_new.csv")[list(model.feature_names)].to_numpy(np.float32)}
    )
    np.testing.assert_allclose(got, model.predict_proba(pd.read_csv("wine_new.csv")), atol=1e-5)


def test_the_readmes_own_data_section_is_the_doc_that_runs():
    """README's "Your own data" blocks are docs/own-data.md's, which the test above runs."""
    from tests.test_docs import ROOT, code_blocks

    readme, doc = ROOT / "README.md", ROOT / "docs" / "own-data.md"
    section = readme.read_text().split("## Your own data\n", 1)[1].split("\n## ", 1)[0]
    assert "docs/own-data.md" in section
    (shell,) = [b for b in code_blocks(readme, ("bash",)) if b in section]
    (python,) = [b for b in code_blocks(readme, ("python",)) if b in section]
    assert shell == code_blocks(doc, ("bash",))[0]
    assert python == code_blocks(doc, ("python",))[1]
