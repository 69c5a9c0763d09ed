"""The command line: end-to-end runs, resume, and every user error as one line, exit 2.

Most runs call ``cli.main`` in this process (x64 on, so in float64), which is
fast; a few run the real command in a subprocess (float32, as users run it) to
check exit codes, stderr and the console script.
"""

import contextlib
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from unittest import mock

import jax
import numpy as np
import pytest

import jaxnn
from jaxnn import checkpoint, cli, data, optim
from jaxnn.cli import curves
from tests.test_data import small_mnist, write_idx_dir

SMALL = ["--hidden", "8", "--batch-size", "64"]  # quick to compile and run


def run(*argv):
    """``jaxnn ARGV`` in this process: (exit status, stdout, stderr).

    curves.png is drawn in this process (``Plotter``'s fallback), not in a drawing
    process started for each run (about 3 s of CPU each; tests/test_curves.py tests that
    process, and the tests here that start ``jaxnn`` processes go through it)."""
    out, err = io.StringIO(), io.StringIO()
    no_process = mock.patch.object(curves.Plotter, "start", lambda self: None)
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), no_process:
        try:
            status = cli.main(list(argv))
        except SystemExit as e:  # argparse's own errors
            status = e.code
    return status, out.getvalue(), err.getvalue()


def run_subprocess(*argv, timeout=120):
    return subprocess.run(
        [sys.executable, "-m", "jaxnn", *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


def snapshot(directory):
    """{relative path: sha256} of every file under directory."""
    files = {}
    for root, _, names in os.walk(directory):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files[os.path.relpath(path, directory)] = hashlib.sha256(f.read()).hexdigest()
    return files


def restore(run_dir, hidden=(8,), dataset="digits", optimizer="adam"):
    """The newest checkpoint of a run, restored against a fresh template."""
    ds = data.load(dataset)
    net = ds.network(hidden, "relu")
    opt = optim.OPTIMIZERS[optimizer](1e-3)
    key = jax.random.key(0)
    template = jaxnn.init_params(key, net)
    with checkpoint.Checkpoints(os.path.join(run_dir, "checkpoints")) as ckpts:
        return ckpts.restore(template, opt.init(template), key)


def assert_trees_equal(a, b):
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(leaves_a, leaves_b, strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)  # bitwise: no tolerance


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """One short run on digits, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    argv = ["--epochs", "2", "--checkpoint-every", "0", *SMALL, "--out", str(out)]
    status, stdout, stderr = run("train", *argv)
    assert status == 0, stderr
    return out, stdout, stderr


@pytest.mark.slow
def test_train_writes_run(digits_run):
    out, stdout, stderr = digits_run
    assert re.fullmatch(
        rf"digits: test accuracy 0\.\d{{4}} after 2 epochs in \d+\.\d s -> {re.escape(str(out))}\n",
        stdout,
    )
    assert "2/2" in stderr  # the progress bar, on stderr
    assert sorted(os.listdir(out)) == [
        "checkpoints", "config.json", "curves.png", "metrics.json", "model.json"
    ]  # fmt: skip
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(os.listdir(out / "checkpoints")) == ["1", "2"]

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "digits" and metrics["task"] == "classification"
    assert metrics["network"] == {
        "sizes": [64, 8, 10],
        "activations": ["relu", "softmax"],
        "loss": "cross_entropy",
    }
    assert metrics["optimizer"] == {
        "name": "adam",
        "learning_rate": 1e-3,
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
        "eps_hat": False,
    }
    assert metrics["epochs"] == 2 and metrics["batch_size"] == 64 and metrics["seed"] == 0
    assert metrics["gradients"] == "hand" and metrics["seconds"] > 0
    assert [r["epoch"] for r in metrics["history"]] == [1, 2]
    for record in metrics["history"]:
        assert set(record) == {
            "epoch",
            "train_cost",
            "test_cost",
            "test_accuracy",
            "train_accuracy",
        }
        assert record["train_cost"] > 0 and 0 <= record["test_accuracy"] <= 1
    assert metrics["test_accuracy"] == metrics["history"][-1]["test_accuracy"]
    assert f"{metrics['test_accuracy']:.4f}" in stdout

    restored = restore(out)
    assert restored.epoch == 2 and restored.meta["history"] == metrics["history"]
    np.testing.assert_array_equal(jax.random.key_data(restored.key), [0, 0])  # seed 0


@pytest.mark.slow  # a second and third run of jaxnn train in this process
def test_train_regression(tmp_path):
    out = tmp_path / "run"
    status, stdout, _ = run(
        "train", "--dataset", "diabetes", "--epochs", "2", "--optimizer", "sgd",
        "--learning-rate", "0.01", "--hidden", "--batch-size", "32", "--out", str(out),
    )  # fmt: skip
    assert status == 0
    assert re.match(r"diabetes: test R\^2 -?\d\.\d{4} after 2 epochs", stdout)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["network"]["sizes"] == [10, 1]  # --hidden with no sizes: no hidden layer
    assert metrics["optimizer"] == {"name": "sgd", "learning_rate": 0.01}
    assert set(metrics["history"][0]) == {
        "epoch", "train_cost", "test_cost", "test_r2", "test_mse", "train_r2", "train_mse"
    }  # fmt: skip
    assert "test_r2" in metrics and "test_accuracy" not in metrics


@pytest.mark.slow
def test_train_mnist_from_files(tmp_path):
    directory = write_idx_dir(tmp_path / "mnist", small_mnist(m_train=40), gz=True)
    out = tmp_path / "run"
    status, _, stderr = run(
        "train", "--dataset", "mnist", "--data", str(directory), "--epochs", "1",
        "--hidden", "4", "--batch-size", "8", "--out", str(out),
    )  # fmt: skip
    assert status == 0, stderr
    assert json.loads((out / "metrics.json").read_text())["network"]["sizes"] == [12, 4, 10]


@pytest.mark.slow
def test_resume_is_bitwise_exact(tmp_path):
    """--epochs 2 then --resume --epochs 4 ends exactly where --epochs 4 does."""
    split, whole = tmp_path / "split", tmp_path / "whole"
    flags = ["--optimizer", "momentum", *SMALL]
    hourly = ["--checkpoint-every", "3600"]  # not 10 s, the default: a loaded machine takes that
    assert run("train", "--epochs", "2", *flags, *hourly, "--out", str(split))[0] == 0
    assert sorted(os.listdir(split / "checkpoints")) == ["2"]  # none due: the last only
    every = ["--checkpoint-every", "0"]  # every epoch
    status, stdout, _ = run("train", "--resume", "--epochs", "4", *every, "--out", str(split))
    assert status == 0 and "after 4 epochs" in stdout
    assert run("train", "--epochs", "4", *flags, "--out", str(whole))[0] == 0

    a, b = restore(split, optimizer="momentum"), restore(whole, optimizer="momentum")
    assert a.epoch == b.epoch == 4
    assert_trees_equal(a.params, b.params)
    assert_trees_equal(a.opt_state, b.opt_state)
    metrics_a = json.loads((split / "metrics.json").read_text())
    metrics_b = json.loads((whole / "metrics.json").read_text())
    assert metrics_a["history"] == metrics_b["history"]
    assert sorted(os.listdir(split / "checkpoints")) == ["2", "3", "4"]  # the newest 3 kept


@pytest.mark.slow
def test_resume_rejects_other_settings(digits_run, tmp_path):
    out = digits_run[0]
    before = snapshot(out)
    status, _, stderr = run(
        "train", "--resume", "--out", str(out), "--epochs", "3", "--hidden", "16", "8"
    )
    assert status == 2
    assert stderr == (
        f"jaxnn: error: --resume: {out} does not match: --hidden [16, 8] but the run has [8]\n"
    )
    status, _, stderr = run("train", "--resume", "--out", str(out), "--epochs", "1")
    assert status == 2 and "has 2 epochs already, more than --epochs 1 (the total)" in stderr
    assert snapshot(out) == before


@pytest.mark.slow
def test_resume_rejects_checkpoint_of_another_network(digits_run, tmp_path):
    """A run whose checkpoints come from another network: the error names each mismatch."""
    other = tmp_path / "other"
    shutil.copytree(digits_run[0], other)
    config = json.loads((other / "config.json").read_text())
    config["settings"]["hidden"] = [5]  # the run now claims a hidden layer of 5; checkpoints: 8
    config["network"]["sizes"] = [64, 5, 10]
    (other / "config.json").write_text(json.dumps(config))
    before = snapshot(other)
    status, _, stderr = run("train", "--resume", "--epochs", "3", "--out", str(other))
    assert status == 2 and stderr.count("\n") == 1
    assert "does not match the network and optimizer" in stderr
    assert "params.0.W has shape (8, 64) float64 there, shape (5, 64) float64 expected" in stderr
    assert snapshot(other) == before


@pytest.mark.slow
def test_checkpoint_keeps_dtypes_and_typed_key(tmp_path):
    net = jaxnn.Network((3, 2), ("sigmoid",), "binary_cross_entropy")
    opt = optim.adam(0.1)
    params = jaxnn.init_params(jax.random.key(1), net, dtype=np.float32)
    key = jax.random.key(42)
    with checkpoint.Checkpoints(tmp_path / "c") as ckpts:
        for epoch in range(1, 6):
            ckpts.save(epoch, params, opt.init(params), key, {"note": "x"})
        assert ckpts.epochs() == [3, 4, 5]
        restored = ckpts.restore(params, opt.init(params), key, epoch=4)
    assert restored.epoch == 4 and restored.meta == {"note": "x", "epoch": 4}
    assert_trees_equal(restored.params, params)
    assert jax.random.key_data(restored.key).tolist() == jax.random.key_data(key).tolist()
    assert not any(name.startswith(".") or "tmp" in name for name in os.listdir(tmp_path / "c"))


# --- errors: one line on stderr, exit status 2, nothing written ----------------------------

ERRORS = [
    (["--optimizer", "adamw"], "unknown optimizer 'adamw'; valid: sgd, momentum, rmsprop, adam"),
    (["--dataset", "iris"], "unknown dataset 'iris'; valid: digits, breast_cancer, diabetes, "),
    (["--activation", "swish"], "unknown activation 'swish'; valid: sigmoid, tanh, relu, "),
    (["--gradients", "numeric"], "unknown gradients 'numeric'; valid: hand, autodiff"),
    (["--learning-rate", "0"], "learning rate must be a finite number > 0, got 0.0"),
    (["--learning-rate", "-0.1"], "learning rate must be a finite number > 0, got -0.1"),
    (["--epochs", "0"], "epochs must be >= 1, got 0"),
    (["--batch-size", "-3"], "batch size must be >= 1, got -3"),
    (["--batch-size", "5000"], "batch size 5000 is larger than the training set (1438 examples)"),
    (["--hidden", "64", "0"], "hidden layer sizes must be >= 1, got 64 0"),
    (["--dataset", "mnist"], "--dataset mnist needs --data DIR"),
    (["--dataset", "mnist", "--data", "{tmp}/no"], "directory '{tmp}/no' does not exist"),
    (["--dataset", "mnist", "--data", "{tmp}"], "holds neither the IDX files"),
    (["--data", "{tmp}"], "--data {tmp} is a directory: for the MNIST files there give "),
    (["--dataset", "digits", "--data", "{tmp}"], "--data is only for --dataset mnist or a file"),
    (["--resume"], "--resume needs --out DIR, the run to continue"),
    (["--devices", "0"], "devices must be an integer >= 1, got 0"),
    (["--devices", "9999"], "asked for 9999 devices, but only"),
    (["--cpu-threads", "0"], "--cpu-threads must be >= 1, got 0"),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "message"), ERRORS, ids=[" ".join(a) for a, _ in ERRORS])
def test_errors(tmp_path, monkeypatch, argv, message):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    before = snapshot(tmp_path)
    monkeypatch.chdir(tmp_path)  # a default --out would land here
    status, stdout, stderr = run("train", *argv)
    assert status == 2
    assert stdout == ""
    assert stderr.startswith("jaxnn: error: ") and stderr.count("\n") == 1
    assert message.replace("{tmp}", str(tmp_path)) in stderr
    assert snapshot(tmp_path) == before and not os.path.exists(tmp_path / "runs")


def test_error_existing_run_untouched(digits_run):
    out = digits_run[0]
    before = snapshot(out)
    status, stdout, stderr = run("train", "--epochs", "1", "--out", str(out))
    assert status == 2 and stdout == ""
    assert stderr == (
        f"jaxnn: error: {out} already exists and is not empty; continue the run there with "
        "--resume or choose another --out\n"
    )
    assert snapshot(out) == before


def test_argparse_errors_are_one_line():
    for argv, words in [
        (["train", "--epochs", "x"], "argument --epochs: invalid int value: 'x'"),
        (["train", "--bogus"], "unrecognized arguments: --bogus"),
        ([], "the following arguments are required: COMMAND"),
    ]:
        status, stdout, stderr = run(*argv)
        assert status == 2 and stdout == "" and stderr.count("\n") == 1
        assert words in stderr and stderr.startswith("jaxnn")


@pytest.mark.slow
def test_subprocess_errors(tmp_path):
    """The real command: exit status 2, one line, no traceback."""
    result = run_subprocess("train", "--optimizer", "adamw", "--out", str(tmp_path / "r"))
    assert result.returncode == 2 and result.stdout == ""
    assert (
        result.stderr
        == "jaxnn: error: unknown optimizer 'adamw'; valid: sgd, momentum, rmsprop, adam\n"
    )
    result = run_subprocess("train", "--dataset", "mnist", "--data", str(tmp_path))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "holds neither the IDX files" in result.stderr
    assert not os.path.exists(tmp_path / "r")


def write_npz(directory, **changes):
    arrays = {**small_mnist(m_train=40), **changes}
    os.makedirs(directory, exist_ok=True)
    np.savez(os.path.join(directory, "mnist.npz"), **arrays)
    return directory


def nan_images():
    x = small_mnist(m_train=40)["x_train"].astype(np.float32)
    x[3, 1, 2] = np.nan  # image 3, pixel 1 * 3 + 2 = 5
    x[7, 0, 0] = np.inf
    return x


BAD_DATA = {
    # name: (arrays changed in mnist.npz, words of the one-line error)
    "nan": (
        {"x_train": nan_images()},
        "train images has 2 non-finite values (NaN or Inf), first at pixel 5, example 3",
    ),
    "label-range": (
        {"y_test": np.array([0, 1, 12, 3, 4, 5, 6, 7, 8, 9])},
        "test labels must be from 0 to 9 (10 classes), and 1 is not: the first is label 12 "
        "(example 2)",
    ),
    "lengths": ({"y_train": np.arange(39) % 10}, "40 train images but 39 train labels"),
    "empty": (
        {"x_train": np.zeros((0, 4, 3), np.uint8), "y_train": np.zeros(0, np.uint8)},
        "no train images",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_is_one_line(tmp_path, case):
    changes, words = BAD_DATA[case]
    directory = write_npz(tmp_path / "mnist", **changes)
    out = tmp_path / "run"
    status, stdout, stderr = run(
        "train", "--dataset", "mnist", "--data", str(directory), "--hidden", "4",
        "--batch-size", "8", "--out", str(out),
    )  # fmt: skip
    assert status == 2 and stdout == "" and stderr.count("\n") == 1
    assert stderr.startswith("jaxnn: error: ") and words in stderr
    assert not out.exists()


@pytest.mark.slow
def test_divergence_keeps_last_good_checkpoint(tmp_path):
    """A learning rate of 1e6 overflows the cost: exit status 1, one line naming the first
    non-finite batch cost, found here by single steps; the epochs before it kept and
    loadable, nothing of its epoch saved."""
    from tests.test_train import first_nonfinite_cost

    ds = data.load("diabetes")
    steps = ds.X_train.shape[1] // 32
    epoch, step, cost = first_nonfinite_cost(
        ds.network((), "relu"), optim.sgd(1e6), ds, 32, jax.random.key(0)
    )
    assert epoch >= 2  # so that a good checkpoint exists to keep
    out = tmp_path / "run"
    status, stdout, stderr = run(
        "train", "--dataset", "diabetes", "--optimizer", "sgd", "--learning-rate", "1e6",
        "--hidden", "--batch-size", "32", "--epochs", str(epoch + 2), "--checkpoint-every", "0",
        "--out", str(out),
    )  # fmt: skip
    assert status == 1 and stdout == ""
    last = stderr.splitlines()[-1]
    assert last == (
        f"jaxnn: error: training diverged: the cost became {cost} at step {step} of {steps} "
        f"in epoch {epoch} (a smaller learning rate may help); kept the last good "
        f"checkpoint, epoch {epoch - 1}, in {out / 'checkpoints'}"
    )
    kept = list(range(max(1, epoch - 3), epoch))  # the newest 3
    assert sorted(os.listdir(out / "checkpoints"), key=int) == [str(e) for e in kept]
    assert not (out / "metrics.json").exists()
    restored = restore(out, hidden=(), dataset="diabetes", optimizer="sgd")
    assert restored.epoch == epoch - 1
    assert [r["epoch"] for r in restored.meta["history"]] == list(range(1, epoch))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(restored.params))


def test_resume_from_damaged_checkpoint_is_one_line(digits_run, tmp_path):
    run_dir = tmp_path / "damaged"
    shutil.copytree(digits_run[0], run_dir)
    metadata = run_dir / "checkpoints" / "2" / "state" / "_METADATA"
    metadata.write_bytes(metadata.read_bytes()[:100])  # truncated
    before = snapshot(run_dir)
    status, stdout, stderr = run("train", "--resume", "--epochs", "3", "--out", str(run_dir))
    assert status == 2 and stdout == "" and stderr.count("\n") == 1
    assert stderr.startswith(
        f"jaxnn: error: checkpoint {run_dir / 'checkpoints' / '2'} cannot be restored: "
        "state/_METADATA: JSONDecodeError"
    )
    assert stderr.endswith("the other saved epochs are [1]\n")
    assert snapshot(run_dir) == before


# A real process, in float64 like the in-process runs, so that its checkpoints resume here.
# It runs each command line given after HOLD and MARKER in turn, stopping at the first
# that fails. It holds before the callback of epoch HOLD (that epoch trained, not yet saved) until a
# signal has arrived (the first one puts the previous handlers back), after writing the
# file MARKER to say it is waiting: the signal lands at that point of every run.
CHILD = (
    "import os, shlex, signal, sys, time, jax\n"
    "jax.config.update('jax_enable_x64', True)\n"
    "jax.config.update('jax_default_matmul_precision', 'highest')\n"
    "jax.config.update('jax_numpy_rank_promotion', 'raise')\n"
    "from jaxnn import train\n"
    "from jaxnn.cli import main\n"
    "hold, marker = int(sys.argv[1]), sys.argv[2]\n"
    "fit = train.fit\n"
    "def held_fit(*args, callback, **kwargs):\n"
    "    def on_epoch(epoch, *rest):\n"
    "        if epoch == hold:\n"
    "            handler = signal.getsignal(signal.SIGINT)\n"
    "            open(marker, 'w').close()\n"
    "            deadline = time.monotonic() + 120\n"
    "            while signal.getsignal(signal.SIGINT) is handler:\n"
    "                assert time.monotonic() < deadline, 'no signal came'\n"
    "                time.sleep(0.005)\n"
    "        return callback(epoch, *rest)\n"
    "    return fit(*args, callback=on_epoch, **kwargs)\n"
    "train.fit = held_fit\n"
    "for command in sys.argv[3:]:\n"
    "    status = main(shlex.split(command))\n"
    "    if status:\n"
    "        sys.exit(status)\n"
)


def interrupt(out, signum, epochs, after_epoch):
    """Start ``jaxnn train`` in a process; send it ``signum`` once epoch ``after_epoch``
    has trained, before its checkpoint is saved. Returns (exit status, stderr)."""
    marker = out.parent / f"{out.name}.holding"
    command = ["train", "--epochs", str(epochs), *SMALL, "--checkpoint-every", "0"]
    command = shlex.join([*command, "--out", str(out)])
    with open(out.parent / f"{out.name}.stderr", "w+") as err:
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(after_epoch), str(marker), command],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "JAX_PLATFORMS": "cpu"},
        )
        try:
            deadline = time.monotonic() + 120
            while not marker.exists():
                assert proc.poll() is None and time.monotonic() < deadline, "never held"
                time.sleep(0.005)
            proc.send_signal(signum)
            status = proc.wait(timeout=120)
        finally:
            proc.kill()
            proc.wait()
        err.seek(0)
        return status, err.read()


def float64_process(*commands):
    """``jaxnn COMMAND`` for each list of arguments in turn, in one process of its own, in
    float64 as ``interrupt``'s (never held)."""
    return subprocess.run(
        [sys.executable, "-c", CHILD, "0", os.devnull, *map(shlex.join, commands)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )


def interrupted_epoch(stderr, out, signame, epochs):
    last = stderr.splitlines()[-1]
    match = re.fullmatch(
        rf"jaxnn: interrupted by {signame} after epoch (\d+) of {epochs}; its checkpoint is "
        rf"saved, and metrics.json and curves.png show the epochs done; resume with: "
        rf"jaxnn train --resume --out {re.escape(str(out))}",
        last,
    )
    assert match, stderr[-2000:]
    assert f"jaxnn: {signame}: stopping once this epoch's checkpoint is saved" in stderr
    return int(match.group(1))


@pytest.mark.slow
def test_sigint_saves_and_resumes_bitwise(tmp_path):
    """Ctrl-C after epoch 2: exit 130 with a resume command; resuming ends exactly where an
    uninterrupted run does. Each run in a process of its own, as users run it (this one
    compiles with other options, whose last bits differ: tests/conftest.py)."""
    out, whole = tmp_path / "interrupted", tmp_path / "whole"
    status, stderr = interrupt(out, signal.SIGINT, epochs=12, after_epoch=2)
    assert status == 130, stderr[-2000:]
    done = interrupted_epoch(stderr, out, "SIGINT", 12)
    assert done == 2
    assert restore(out).epoch == done
    unfinished = json.loads((out / "metrics.json").read_text())  # to look at before resuming
    assert unfinished["finished"] is False and unfinished["epochs_done"] == done
    assert [r["epoch"] for r in unfinished["history"]] == list(range(1, done + 1))
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # the resumed run, then an uninterrupted one, in one process
    both = float64_process(
        ["train", "--resume", "--out", str(out)],
        ["train", "--epochs", "12", *SMALL, "--out", str(whole)],
    )
    assert both.returncode == 0, both.stderr
    resumed, uninterrupted = both.stdout.splitlines()
    assert "after 12 epochs" in resumed and resumed.endswith(f"-> {out}")
    assert uninterrupted.endswith(f"-> {whole}")
    a, b = restore(out), restore(whole)
    assert a.epoch == b.epoch == 12
    assert_trees_equal(a.params, b.params)
    assert_trees_equal(a.opt_state, b.opt_state)
    history = lambda d: json.loads((d / "metrics.json").read_text())["history"]
    assert history(out) == history(whole)


@pytest.mark.slow
def test_sigterm_saves_and_exits_143(tmp_path):
    out = tmp_path / "run"
    status, stderr = interrupt(out, signal.SIGTERM, epochs=12, after_epoch=1)
    assert status == 143, stderr[-2000:]
    assert interrupted_epoch(stderr, out, "SIGTERM", 12) == 1
    restored = restore(out)
    assert restored.epoch == 1 and len(restored.meta["history"]) == 1
    assert sorted(os.listdir(out / "checkpoints")) == ["1"]


@pytest.mark.slow
def test_default_train_reaches_97_percent(tmp_path):
    """``jaxnn train`` with no flags (but --out): digits, float32, >= 97% test accuracy."""
    script = shutil.which("jaxnn", path=os.path.dirname(sys.executable))
    argv = [script] if script else [sys.executable, "-m", "jaxnn"]
    out = tmp_path / "default"
    result = subprocess.run(
        [*argv, "train", "--out", str(out)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["epochs"] == 40 and metrics["network"]["sizes"] == [64, 256, 128, 10]
    assert metrics["test_accuracy"] >= 0.97
    assert "Traceback" not in result.stderr
