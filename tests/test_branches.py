"""Branches of checkpoint, fit and ``jaxnn train`` that the other tests do not reach.

Each test builds the situation for real (a checkpoint written by orbax another way, a
run directory edited, a module made unimportable) and checks the exact error.
"""

import json
import os
import shutil
import sys

import jax
import numpy as np
import optax
import pytest

import jaxnn
from jaxnn import checkpoint, optim, train
from tests.helpers import run_script
from tests.test_cli import SMALL, run, snapshot
from tests.test_train import toy_data

NET = jaxnn.Network((3, 4, 2), ("relu", "softmax"), "cross_entropy")


def templates(optimizer=None):
    params = jaxnn.init_params(jax.random.key(0), NET)
    optimizer = optimizer or optim.adam(0.1)
    return params, optimizer.init(params), jax.random.key(0)


def orbax_save(directory, state, meta, *, use_ocdbt=True):
    """One step (epoch 1) with jaxnn's two items, written by orbax directly."""
    import orbax.checkpoint as ocp

    handlers = {
        "state": ocp.StandardCheckpointHandler(use_ocdbt=use_ocdbt),
        "meta": ocp.JsonCheckpointHandler(),
    }
    with ocp.CheckpointManager(directory, item_names=tuple(handlers), item_handlers=handlers) as m:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta))
        m.save(1, args=args)
        m.wait_until_finished()


def jaxnn_state(params, opt_state, key):
    """The ``state`` item as ``Checkpoints.save`` writes it."""
    return {"params": params, "opt_state": opt_state, "key": jax.random.key_data(key)}


def restore(directory, optimizer=None):
    with checkpoint.Checkpoints(directory) as ckpts:
        return ckpts.restore(*templates(optimizer))


# --- checkpoint.py ---------------------------------------------------------------------------


def test_checkpoint_without_arrays(tmp_path):
    orbax_save(tmp_path, {"params": {}}, {"epoch": 1})
    with pytest.raises(ValueError, match=r"/1 cannot be restored: it holds no arrays; it is tru"):
        restore(tmp_path)


def test_meta_that_is_not_a_json_object(tmp_path):
    orbax_save(tmp_path, jaxnn_state(*templates()), [1, 2])
    with pytest.raises(ValueError, match=r"cannot be restored: its meta is a JSON list, not an o"):
        restore(tmp_path)


@pytest.mark.slow
def test_checkpoint_without_ocdbt_restores_and_is_checked(tmp_path):
    """A step in orbax's other array layout (one zarr directory per array, no OCDBT
    manifest): its shapes come from orbax's metadata; it restores, and a mismatch or a
    damaged array file is a clear error."""
    params, opt_state, key = templates()
    params = jax.tree.map(lambda x: x + 1.0, params)  # not the template's values
    state = jaxnn_state(params, opt_state, key)
    orbax_save(tmp_path, state, {"epoch": 1, "note": "plain"}, use_ocdbt=False)
    step = tmp_path / "1" / "state"
    assert not (step / "manifest.ocdbt").exists() and (step / "params.0.W" / ".zarray").is_file()
    got = restore(tmp_path)
    assert got.meta == {"epoch": 1, "note": "plain"}
    for a, b in zip(jax.tree.leaves(got.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"opt_state\.mu\.0\.W is there but not expected"):
        restore(tmp_path, optim.sgd(0.1))

    # A truncated array file: only reading the data finds it. orbax reads a step's arrays
    # concurrently; when one read fails, the others' coroutines are dropped unfinished and
    # complain on stderr whenever they are collected (jaxnn reads OCDBT stores value by
    # value first to avoid this, not this layout): so this restore runs in its own process.
    chunk = step / "params.0.W" / "0.0"
    chunk.write_bytes(chunk.read_bytes()[:5])
    script = (
        "import sys, jax\n"
        "jax.config.update('jax_enable_x64', True)\n"
        "import jaxnn\n"
        "from jaxnn import checkpoint, optim\n"
        "net = jaxnn.Network((3, 4, 2), ('relu', 'softmax'), 'cross_entropy')\n"
        "params = jaxnn.init_params(jax.random.key(0), net)\n"
        "try:\n"
        "    with checkpoint.Checkpoints(sys.argv[1]) as ckpts:\n"
        "        ckpts.restore(params, optim.adam(0.1).init(params), jax.random.key(0))\n"
        "except ValueError as e:\n"
        "    print(e, flush=True)\n"
    )
    message = run_script(script, str(tmp_path)).stdout
    assert message.startswith(f"checkpoint {tmp_path / '1'} cannot be restored: reading it failed")
    assert message.count("\n") == 1 and "truncated, damaged or not a jaxnn checkpoint" in message
    assert "Truncated Zstd-compressed stream" in message  # the cause, not orbax's wrapper


# --- train.fit -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("epochs", "start_epoch", "message"),
    [
        (-1, 0, "epochs must be an integer >= 0, got -1"),
        (2.0, 0, "epochs must be an integer"),
        (2, 3, r"start_epoch must be in \[0, epochs = 2\], got 3"),
        (2, -1, r"start_epoch must be in \[0, epochs = 2\], got -1"),
    ],
)
def test_fit_rejects_bad_epochs(epochs, start_epoch, message):
    net, ds, _ = toy_data("softmax")
    calls = []
    with pytest.raises(ValueError, match=message):
        train.fit(
            net, optim.sgd(0.1), ds, epochs, 8, jax.random.key(0),
            start_epoch=start_epoch, callback=calls.append,
        )  # fmt: skip
    assert calls == []


def test_params_turning_nonfinite_with_finite_batch_costs():
    """One batch per epoch, and an update that is infinite: the batch cost, taken before
    the update, is finite, the parameters after it are not."""
    net, ds, params = toy_data("softmax")
    blow_up = optax.scale(np.inf)
    seen = []
    with pytest.raises(train.NonFiniteCostError) as e:
        train.fit(net, blow_up, ds, 3, 40, jax.random.key(0), params=params, callback=seen.append)
    assert str(e.value) == (
        "the parameters became non-finite (NaN or Inf) in epoch 1, though each of its 1 batch "
        "costs was finite"
    )
    assert (e.value.epoch, e.value.step, e.value.steps) == (1, None, 1) and seen == []


@pytest.mark.slow
def test_test_cost_turning_nonfinite_with_finite_training():
    """Test targets of 1e200 (finite): the squared error overflows to inf on the test set
    only; training and its parameters stay finite."""
    net, ds, _ = toy_data("linear")
    ds = ds._replace(Y_test=np.full(np.shape(ds.Y_test), 1e200))
    seen = []
    with pytest.raises(train.NonFiniteCostError) as e:
        train.fit(net, optim.sgd(0.01), ds, 3, 8, jax.random.key(0), callback=seen.append)
    assert str(e.value) == "the test cost became inf after epoch 1"
    assert (e.value.epoch, e.value.step, e.value.steps) == (1, None, 5) and seen == []


# --- jaxnn train -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory):
    """A one-epoch digits run, copied by the tests that edit it."""
    out = tmp_path_factory.mktemp("runs") / "digits"
    status, _, stderr = run("train", "--epochs", "1", *SMALL, "--out", str(out))
    assert status == 0, stderr
    return out


def edited_copy(run_dir, tmp_path, edit):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    edit(copy)
    return copy


def resume_fails(run_dir, words):
    """``jaxnn train --resume`` on run_dir: exit 2, one line with ``words``, nothing changed."""
    before = snapshot(run_dir)
    status, stdout, stderr = run("train", "--resume", "--epochs", "3", "--out", str(run_dir))
    assert (status, stdout) == (2, ""), stderr
    assert stderr.startswith("jaxnn: error: ") and stderr.count("\n") == 1
    assert words in stderr, stderr
    assert snapshot(run_dir) == before


@pytest.mark.slow
def test_resume_without_valid_history(one_epoch, tmp_path):
    """A checkpoint whose meta has no history (saved here over epoch 1) cannot be resumed."""

    def drop_history(run_dir):
        ds = jaxnn.data.load("digits")
        net = ds.network((8,), "relu")
        params = jaxnn.init_params(jax.random.key(1), net)
        shutil.rmtree(run_dir / "checkpoints" / "1")
        with checkpoint.Checkpoints(run_dir / "checkpoints") as ckpts:
            ckpts.save(1, params, optim.adam(1e-3).init(params), jax.random.key(0), {})

    run_dir = edited_copy(one_epoch, tmp_path, drop_history)
    resume_fails(
        run_dir,
        f"--resume: the checkpoint of epoch 1 in {run_dir / 'checkpoints'} has no valid "
        "history (a record per epoch 1..1, each with epoch, test_accuracy, test_cost, train_cost)",
    )


@pytest.mark.slow
def test_resume_with_config_of_another_network(one_epoch, tmp_path):
    def other_network(run_dir):
        config = json.loads((run_dir / "config.json").read_text())
        config["network"]["activations"] = ["tanh", "softmax"]
        (run_dir / "config.json").write_text(json.dumps(config))

    run_dir = edited_copy(one_epoch, tmp_path, other_network)
    resume_fails(
        run_dir,
        f"--resume: {run_dir} holds a network {{'sizes': [64, 8, 10], 'activations': "
        "['tanh', 'softmax'], 'loss': 'cross_entropy'}, the settings give {'sizes': [64, 8, "
        "10], 'activations': ['relu', 'softmax'], 'loss': 'cross_entropy'}",
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("text", "words"),
    [
        ('{"settings": ', "Expecting value: line 1 column 14"),
        ('{"network": {}}', "config.json: 'settings'"),
        ("[1, 2]", "list indices must be integers"),
    ],
    ids=["truncated", "no-settings", "not-an-object"],
)
def test_resume_with_unreadable_config(one_epoch, tmp_path, text, words):
    run_dir = edited_copy(one_epoch, tmp_path, lambda d: (d / "config.json").write_text(text))
    resume_fails(run_dir, f"--resume: cannot read {run_dir / 'config.json'}: ")
    resume_fails(run_dir, words)


def test_out_that_is_a_file(tmp_path):
    path = tmp_path / "file"
    path.write_text("mine")
    for resume in ([], ["--resume"]):
        status, stdout, stderr = run("train", *resume, "--epochs", "1", "--out", str(path))
        assert (status, stdout) == (2, "")
        # --resume where there is no run yet starts one: the same check
        assert stderr == f"jaxnn: error: --out {path} is a file, not a directory\n"
    assert path.read_text() == "mine" and os.listdir(tmp_path) == ["file"]


@pytest.mark.slow
def test_train_with_autodiff_gradients(one_epoch, tmp_path):
    """``--gradients autodiff`` trains with jax.grad: the run's parameters are bitwise
    those of fit(gradients="autodiff"), and not those of the hand-gradient run."""
    out = tmp_path / "autodiff"
    status, _, stderr = run(
        "train", "--epochs", "1", *SMALL, "--gradients", "autodiff", "--out", str(out)
    )
    assert status == 0, stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["gradients"] == "autodiff"
    ds = jaxnn.data.load("digits")
    net = ds.network((8,), "relu")
    key = jax.random.key(0)
    expected = train.fit(
        net, optim.adam(1e-3), ds, 1, 64, key, gradients="autodiff", train_metrics=True
    )  # jaxnn train records the training set's metrics too
    with checkpoint.Checkpoints(out / "checkpoints") as ckpts:
        got = ckpts.restore(expected.params, expected.opt_state, key)
    with checkpoint.Checkpoints(one_epoch / "checkpoints") as ckpts:
        hand = ckpts.restore(expected.params, expected.opt_state, key)
    leaves = lambda r: [np.asarray(x) for x in jax.tree.leaves(r.params)]
    for a, b in zip(leaves(got), jax.tree.leaves(expected.params), strict=True):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(leaves(got), leaves(hand), strict=True))
    assert metrics["history"] == expected.history


@pytest.mark.parametrize(
    ("module", "package"),
    [("tqdm", "tqdm"), ("matplotlib", "matplotlib"), ("orbax.checkpoint", "orbax")],
)
def test_train_without_an_extra(tmp_path, monkeypatch, module, package):
    """A module of the ``cli`` extra that cannot be imported (None in sys.modules makes
    ``import`` raise ImportError): one line naming it and the fix, nothing written."""
    monkeypatch.setitem(sys.modules, module, None)
    out = tmp_path / "run"
    status, stdout, stderr = run("train", "--epochs", "1", *SMALL, "--out", str(out))
    assert (status, stdout) == (2, "")
    assert stderr == f"jaxnn: error: jaxnn train needs {package}: pip install 'jaxnn[cli]'\n"
    assert not out.exists()


def test_checkpoints_without_orbax(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "orbax.checkpoint", None)
    with pytest.raises(ImportError, match=r"checkpoints need orbax-checkpoint: pip install"):
        checkpoint.Checkpoints(tmp_path / "c")
    assert not (tmp_path / "c").exists()
