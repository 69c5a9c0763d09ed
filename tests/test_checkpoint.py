"""Checkpoints: atomic saves under SIGKILL, the newest k kept, clear errors, no pickle."""

import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn import checkpoint, optim

TMP = ".orbax-checkpoint-tmp"
NET = jaxnn.Network((3, 4, 2), ("relu", "softmax"), "cross_entropy")


def state(seed=0, net=NET, optimizer=None):
    """params, opt_state and a typed key, float64 (x64 is on)."""
    params = jaxnn.init_params(jax.random.key(seed), net)
    optimizer = optimizer or optim.adam(0.1)
    return params, optimizer.init(params), jax.random.key(seed)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


@pytest.fixture
def saved(tmp_path):
    """A directory with epochs 1 and 2 of NET saved; returns (directory, params of epoch 2)."""
    directory = tmp_path / "ckpts"
    params, opt_state, key = state()
    with checkpoint.Checkpoints(directory) as ckpts:
        ckpts.save(1, jax.tree.map(jnp.zeros_like, params), opt_state, key, {"history": [1]})
        ckpts.save(2, params, opt_state, key, {"history": [1, 2]})
    return directory, params


def restore(directory, net=NET, optimizer=None, epoch=None):
    params, opt_state, key = state(net=net, optimizer=optimizer)
    with checkpoint.Checkpoints(directory) as ckpts:
        return ckpts.restore(params, opt_state, key, epoch)


@pytest.mark.slow
def test_roundtrip_and_newest_three_kept(tmp_path):
    params, opt_state, key = state()
    with checkpoint.Checkpoints(tmp_path / "c") as ckpts:
        assert ckpts.latest_epoch() is None and ckpts.epochs() == []
        for epoch in range(1, 6):
            scaled = jax.tree.map(lambda x, e=epoch: x * e, params)
            ckpts.save(epoch, scaled, opt_state, key, {"note": epoch})
        assert ckpts.epochs() == [3, 4, 5] and ckpts.latest_epoch() == 5
        # Which epoch came back is read off what was saved with it (the note, the params
        # scaled by the epoch), not off the epoch asked for, which restore echoes.
        for asked, saved in [(3, 3), (4, 4), (5, 5), (None, 5)]:
            got = ckpts.restore(params, opt_state, key, asked)
            assert got.meta == {"note": saved, "epoch": saved} and got.epoch == saved
            assert_trees_equal(got.params, jax.tree.map(lambda x, e=saved: x * e, params))
        with pytest.raises(ValueError, match=r"no checkpoint of epoch 2 in .*; saved: \[3, 4, 5\]"):
            ckpts.restore(params, opt_state, key, 2)
    assert sorted(os.listdir(tmp_path / "c")) == ["3", "4", "5"]
    with checkpoint.Checkpoints(tmp_path / "two", max_to_keep=2) as ckpts:
        for epoch in range(1, 4):
            ckpts.save(epoch, params, opt_state, key)
        assert ckpts.epochs() == [2, 3]


def test_no_checkpoint_and_directory_is_a_file(tmp_path):
    with pytest.raises(ValueError, match="no checkpoint in"):
        restore(tmp_path / "empty")
    (tmp_path / "f").write_text("x")
    with pytest.raises(ValueError, match=r"checkpoint directory .*f is a file"):
        checkpoint.Checkpoints(tmp_path / "f")


# --- mismatched, truncated, foreign: a ValueError that names the problem ---------------------


def test_another_network(saved):
    directory, _ = saved
    other = jaxnn.Network((3, 5, 2), ("relu", "softmax"), "cross_entropy")
    with pytest.raises(ValueError) as e:
        restore(directory, net=other)
    message = str(e.value)
    assert "(epoch 2) does not match the network and optimizer" in message
    assert "params.0.W has shape (4, 3) float64 there, shape (5, 3) float64 expected" in message
    assert message.index("params.0.W") < message.index("opt_state")  # the cause first


def test_another_optimizer_and_dtype(saved):
    directory, _ = saved
    with pytest.raises(ValueError, match=r"opt_state\.mu\.0\.W is there but not expected"):
        restore(directory, optimizer=optim.sgd(0.1))
    params, opt_state, key = state()
    params32 = jax.tree.map(lambda x: x.astype(jnp.float32), params)
    with (
        checkpoint.Checkpoints(directory) as ckpts,
        pytest.raises(
            ValueError, match=r"params\.0\.W has shape \(4, 3\) float64 there, .*float32"
        ),
    ):
        ckpts.restore(params32, opt_state, key)


def _only(directory, pattern):
    paths = sorted(directory.glob(pattern))
    assert paths, pattern
    return paths


def _truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)


def _flip_middle_byte(path):
    with open(path, "r+b") as f:
        f.seek(os.path.getsize(path) // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))


DAMAGE = {
    # name: (files under the epoch-2 directory, what to do to each, words in the error)
    "array-data-truncated": (
        "state/d/*",
        _truncate,
        "array store is unreadable (ValueError: OUT_OF",
    ),
    "array-data-flipped": ("state/d/*", _flip_middle_byte, "array store is unreadable"),
    "array-data-removed": ("state/d/*", os.remove, "array store is unreadable"),
    "array-index-truncated": ("state/manifest.ocdbt", _truncate, "Error decoding manifest"),
    "tree-metadata-truncated": ("state/_METADATA", _truncate, "state/_METADATA: JSONDecodeError"),
    "tree-metadata-removed": ("state/_METADATA", os.remove, "state/_METADATA: FileNotFoundError"),
    "meta-truncated": ("meta/metadata", _truncate, "meta/metadata: JSONDecodeError"),
    "state-removed": ("state", shutil.rmtree, "it has no state directory"),
}


@pytest.mark.parametrize("case", sorted(DAMAGE))
def test_damaged_checkpoint(saved, case):
    directory, _ = saved
    pattern, damage, words = DAMAGE[case]
    for path in _only(directory / "2", pattern):
        damage(path)
    with pytest.raises(ValueError) as e:
        restore(directory)
    message = str(e.value)
    assert message.startswith(f"checkpoint {directory / '2'} cannot be restored: ")
    assert words in message
    assert "truncated, damaged or not a jaxnn checkpoint; the other saved epochs are [1]" in message
    assert "\n" not in message
    assert restore(directory, epoch=1).epoch == 1  # the other epoch is unharmed


def test_foreign_directories(tmp_path):
    import orbax.checkpoint as ocp

    (tmp_path / "files" / "3").mkdir(parents=True)
    (tmp_path / "files" / "3" / "notes.txt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match=r"files/3 cannot be restored: it has no state or meta"):
        restore(tmp_path / "files")
    with ocp.CheckpointManager(tmp_path / "orbax") as manager:  # another program's checkpoint
        manager.save(1, args=ocp.args.StandardSave({"a": jnp.ones(3)}))
        manager.wait_until_finished()
    with pytest.raises(ValueError, match=r"orbax/1 cannot be restored: it has no state or meta"):
        restore(tmp_path / "orbax")
    names = ("state", "meta")
    with ocp.CheckpointManager(tmp_path / "items", item_names=names) as manager:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave({"a": jnp.ones(3)}), meta=ocp.args.JsonSave([1, 2])
        )
        manager.save(1, args=args)
        manager.wait_until_finished()
    with pytest.raises(ValueError, match=r"does not match .*: params\.0\.W is missing there"):
        restore(tmp_path / "items")


# --- loading never runs code ------------------------------------------------------------


OCDBT_MAGIC = b"\x0c\xdb"  # TensorStore's OCDBT manifest and data files


def test_no_pickle_anywhere(saved, monkeypatch):
    """Every file is JSON, a commit note or OCDBT binary; restoring never unpickles."""
    directory, params = saved
    for root, _, names in os.walk(directory):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                raw = f.read()
            assert not raw.startswith(b"\x80"), f"{name} starts like a pickle"
            if name == "commit_success.txt":
                assert raw.startswith(b"Checkpoint")
            elif raw.startswith(b"{"):
                json.loads(raw)
            else:
                assert raw.startswith(OCDBT_MAGIC), f"{os.path.join(root, name)}: {raw[:8]!r}"

    def refuse(*args, **kwargs):
        raise AssertionError("pickle used while restoring")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, refuse)
    monkeypatch.setattr(np, "load", refuse)
    assert_trees_equal(restore(directory).params, params)


# --- atomic saves: a process killed mid-save -----------------------------------------------

# Saves epochs 1, 2, ... and SIGKILLs itself from inside the save of epoch ``target``, at
# a chosen point: right after the save's temporary directory is made (before any array
# is written), or right before the rename that commits it (everything written). The kill
# comes from the file-system call itself, so it lands at that point every run.
SAVER = textwrap.dedent(
    """
    import os, signal, sys
    import jax, jax.numpy as jnp, numpy as np
    from jaxnn import checkpoint

    directory, n, target, point = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    asynchronous = sys.argv[5] == "async"
    die = lambda: os.kill(os.getpid(), signal.SIGKILL)
    name = lambda path: os.path.basename(os.fspath(path))
    if point == "created":
        real_mkdir = os.mkdir
        def mkdir(path, *args, **kwargs):
            real_mkdir(path, *args, **kwargs)
            if name(path).startswith(f"{target}.orbax-checkpoint-tmp"):
                die()
        os.mkdir = mkdir
    else:
        assert point == "committing", point
        real_rename = os.rename
        def rename(src, dst, *args, **kwargs):
            if name(dst) == str(target) and "tmp" in name(src):
                die()
            real_rename(src, dst, *args, **kwargs)
        os.rename = rename
    base = jnp.asarray(np.random.default_rng(0).standard_normal(n, np.float32))
    with checkpoint.Checkpoints(directory, asynchronous=asynchronous) as ckpts:
        for epoch in range(1, target + 1):
            params = [{"W": base + epoch, "b": jnp.full((4, 1), epoch, jnp.float32)}]
            ckpts.save(epoch, params, {"count": jnp.int32(epoch)}, jax.random.key(epoch),
                       {"history": list(range(epoch))})
            ckpts.wait()  # with async saves: complete on disk before it says so
            print("SAVED", epoch, flush=True)
    print("NOT KILLED", flush=True)
    """
)
N = 1000


def expected(epoch):
    base = np.random.default_rng(0).standard_normal(N, np.float32)
    return [{"W": base + np.float32(epoch), "b": np.full((4, 1), epoch, np.float32)}]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("point", ["created", "committing"])
def test_kill_during_save_keeps_previous_checkpoint(tmp_path, point, mode):
    """SIGKILL inside the save of epoch 3: epoch 2 restores intact, and the unfinished
    temporary directory of epoch 3 is removed when the directory is next opened."""
    directory = tmp_path / "ckpts"
    result = subprocess.run(
        [sys.executable, "-c", SAVER, str(directory), str(N), "3", point, mode],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-2000:]
    assert result.stdout.split("\n")[:-1] == ["SAVED 1", "SAVED 2"]
    left = sorted(os.listdir(directory))
    assert left[:2] == ["1", "2"] and len(left) == 3 and left[2].startswith(f"3{TMP}"), left
    if point == "committing":  # everything was written; only the rename was missing
        assert (directory / left[2] / "state" / "manifest.ocdbt").is_file()
    template = [{"W": jnp.zeros(N, jnp.float32), "b": jnp.zeros((4, 1), jnp.float32)}]
    with checkpoint.Checkpoints(directory) as ckpts:
        assert sorted(os.listdir(directory)) == ["1", "2"]  # the unfinished save removed
        assert ckpts.latest_epoch() == 2
        got = ckpts.restore(template, {"count": jnp.int32(0)}, jax.random.key(0))
    assert got.meta == {"history": [0, 1], "epoch": 2}
    assert int(got.opt_state["count"]) == 2
    assert_trees_equal(got.params, expected(2))
    assert jax.random.key_data(got.key).tolist() == jax.random.key_data(jax.random.key(2)).tolist()


def test_plain_params_round_trip_without_key_or_optimizer_state(tmp_path):
    """``save`` and ``restore`` take the optimizer state and the key as optional: plain
    params (e.g. a model's weights alone) come back equal, and the absent parts as None."""
    params = jaxnn.init_params(jax.random.key(0), NET)
    template = jaxnn.init_params(jax.random.key(1), NET)  # other values, same shapes
    with checkpoint.Checkpoints(str(tmp_path / "ckpt")) as ckpts:
        ckpts.save(4, params, meta={"note": "weights only"})
        ckpts.wait()
        restored = ckpts.restore(template)
    assert restored.epoch == 4 and restored.meta["note"] == "weights only"
    assert restored.opt_state is None and restored.key is None
    assert_trees_equal(restored.params, params)
