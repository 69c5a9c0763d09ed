"""Checkpoints of a training run, with orbax: params, optimizer state, RNG key, epoch.

A run's checkpoints live in one directory, one subdirectory per saved epoch.
Each save is atomic: orbax's ``CheckpointManager`` writes the step to a
temporary directory (``<epoch>.orbax-checkpoint-tmp-<time>``) and renames it
to ``<epoch>`` once complete, so a process killed mid-save leaves the previous
steps intact, and the unfinished temporary directory is removed on the next
open. (A rename is atomic on POSIX file systems; on object stores such as GCS,
orbax writes a commit file instead.) The newest ``max_to_keep`` (3) steps are
kept; older ones are deleted only after a newer one is complete.

A step holds two items:

* ``state``: the arrays, ``{"params", "opt_state", "key"}``, written by
  orbax's ``StandardCheckpointHandler`` (array files plus JSON metadata);
* ``meta``: a JSON document (``epoch``, and whatever the caller adds, e.g. the
  history).

Restoring reads array data and JSON only: nothing is unpickled, no code runs.
The arrays are TensorStore OCDBT files (a binary key-value format with
checksums) read into the caller's template; the tree structure, metadata and
``meta`` are JSON. Before orbax restores a step, its JSON is parsed and every
value of its array store read, one at a time, and the saved arrays' paths,
shapes and dtypes are checked against the template: a mismatch is a
ValueError naming each difference, and a step that is truncated, damaged or
not a jaxnn checkpoint is a ValueError naming the step and what could not be
read.

Needs ``orbax-checkpoint``, an extra: ``pip install 'jaxnn[cli]'``.
"""

import json
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


def _ocp():
    try:
        import orbax.checkpoint as ocp
    except ImportError:
        raise ImportError("checkpoints need orbax-checkpoint: pip install 'jaxnn[cli]'") from None
    return ocp


class Restored(NamedTuple):
    """A restored step."""

    params: Any
    opt_state: Any
    key: Any
    epoch: int
    meta: dict


def _is_typed_key(key) -> bool:
    return isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key)


def _key_data(key):
    return jax.random.key_data(key) if _is_typed_key(key) else jnp.asarray(key)


def _path_name(path) -> str:
    """``opt_state.mu.0.W``: one name for a leaf whatever the container types."""
    parts = []
    for entry in path:
        for attr in ("key", "idx", "name"):
            if hasattr(entry, attr):
                parts.append(str(getattr(entry, attr)))
                break
        else:
            parts.append(str(entry))
    return ".".join(parts)


def _leaf_specs(tree) -> dict:
    return {
        _path_name(path): (tuple(np.shape(leaf)), np.dtype(leaf.dtype))
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def _describe(spec) -> str:
    shape, dtype = spec
    return f"shape {shape} {dtype}"


def _first_line(error: Exception, limit: int = 300) -> str:
    text = str(error).strip().splitlines()
    text = text[0].split(" [tensorstore_spec=")[0] if text else ""
    text = text[:limit] + ("..." if len(text) > limit else "")
    return f"{type(error).__name__}: {text}"


def _read_ocdbt_specs(state_dir: str):
    """{array name: (shape, dtype)} from the zarr metadata in an OCDBT store, after
    reading every value in it; a message (str) if a read fails."""
    import tensorstore as ts  # orbax's storage layer

    try:
        store = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{state_dir}/"}).result()
        keys = store.list().result()
    except (ValueError, OSError, RuntimeError) as e:
        return f"its array store is unreadable ({_first_line(e)})"
    specs = {}
    for key in keys:
        name = key.decode(errors="replace")
        try:
            value = store.read(key).result().value
            array, _, leaf = name.rpartition("/")
            if leaf == ".zarray":  # zarr v2
                z = json.loads(value)
                specs[array] = (tuple(z["shape"]), np.dtype(jnp.dtype(z["dtype"])))
            elif leaf == "zarr.json" and json.loads(value).get("node_type") == "array":  # v3
                z = json.loads(value)
                specs[array] = (tuple(z["shape"]), np.dtype(jnp.dtype(z["data_type"])))
        except (ValueError, OSError, RuntimeError, KeyError, TypeError) as e:
            return f"{name} is unreadable ({_first_line(e)})"
    return specs


class Checkpoints:
    """The checkpoints of one run, in ``directory``; the newest ``max_to_keep`` kept.

    Example:
      >>> with Checkpoints("runs/x/checkpoints") as ckpts:
      ...     ckpts.save(epoch, params, opt_state, key, {"history": history})
      ...     restored = ckpts.restore(params, opt_state, key)
    """

    def __init__(self, directory, max_to_keep: int = 3):
        ocp = _ocp()
        self.directory = os.path.abspath(os.fspath(directory))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(f"checkpoint directory {self.directory} is a file")
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            create=True,
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={
                "state": ocp.StandardCheckpointHandler(),
                "meta": ocp.JsonCheckpointHandler(),
            },
        )
        # orbax removes unfinished saves in a background thread that only a save waits
        # for; wait now, so a session that only restores does not exit while it runs.
        wait = getattr(self._manager, "_maybe_await_cleanup_tmp_directory", None)
        if wait is not None:
            wait()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self._manager.close()

    def epochs(self) -> list[int]:
        """The saved epochs, oldest first."""
        return sorted(self._manager.all_steps())

    def latest_epoch(self) -> int | None:
        """The newest saved epoch, or None if there is none."""
        return self._manager.latest_step()

    def save(self, epoch: int, params, opt_state, key, meta: dict | None = None) -> None:
        """Save the state after ``epoch`` epochs; returns once it is on disk."""
        ocp = _ocp()
        state = {"params": params, "opt_state": opt_state, "key": _key_data(key)}
        meta = {**(meta or {}), "epoch": int(epoch)}
        self._manager.save(
            int(epoch),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def _step_dir(self, epoch: int) -> str:
        return os.path.join(self.directory, str(int(epoch)))

    def _unreadable(self, epoch: int, what: str) -> ValueError:
        others = [e for e in self.epochs() if e != epoch]
        hint = f"; the other saved epochs are {others}" if others else ""
        return ValueError(
            f"checkpoint {self._step_dir(epoch)} cannot be restored: {what}; it is truncated, "
            f"damaged or not a jaxnn checkpoint{hint}"
        )

    def _saved_specs(self, epoch: int) -> dict:
        """{leaf name: (shape, dtype)} of the saved state, every byte of it read first.

        The JSON files are parsed and the array store (OCDBT) read value by
        value, one at a time: orbax reads the arrays concurrently, and when one
        read fails, the others report to an event loop it has already closed,
        on stderr. Reading them here first turns damage into one clear error.
        """
        step = self._step_dir(epoch)
        missing = [item for item in ("state", "meta") if not os.path.isdir(f"{step}/{item}")]
        if missing:
            raise self._unreadable(epoch, f"it has no {' or '.join(missing)} directory")
        for name in ("state/_METADATA", "meta/metadata"):
            try:
                with open(f"{step}/{name}", "rb") as f:
                    json.loads(f.read())
            except (OSError, ValueError) as e:
                raise self._unreadable(epoch, f"{name}: {_first_line(e)}") from None
        if os.path.isfile(f"{step}/state/manifest.ocdbt"):
            specs = _read_ocdbt_specs(f"{step}/state")
            if isinstance(specs, str):
                raise self._unreadable(epoch, specs)
            if specs:
                return specs
        try:  # another layout: orbax's own reading of the metadata
            saved = self._manager.item_metadata(epoch)["state"]
            tree = saved.tree if hasattr(saved, "tree") else saved
            return {
                _path_name(path): (tuple(leaf.shape), np.dtype(leaf.dtype))
                for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
            }
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise self._unreadable(
                epoch, f"its metadata is unreadable ({_first_line(e)})"
            ) from None

    def check(self, epoch: int, params, opt_state, key) -> None:
        """Raise ValueError unless the saved arrays have the template's paths, shapes, dtypes."""
        have = self._saved_specs(epoch)
        if not have:
            raise self._unreadable(epoch, "it holds no arrays")
        want = _leaf_specs({"params": params, "opt_state": opt_state, "key": _key_data(key)})
        problems = []
        for name in want:
            if name not in have:
                problems.append(f"{name} is missing there")
            elif have[name] != want[name]:
                problems.append(
                    f"{name} has {_describe(have[name])} there, {_describe(want[name])} expected"
                )
        problems += [f"{name} is there but not expected" for name in have if name not in want]
        if problems:
            problems.sort(key=lambda p: not p.startswith("params"))  # the cause first
            more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
            shown = "; ".join(problems[:4]) + more
            raise ValueError(
                f"checkpoint {self.directory} (epoch {epoch}) does not match the network and "
                f"optimizer: {shown}"
            )

    def restore(self, params, opt_state, key, epoch: int | None = None) -> Restored:
        """The saved state of ``epoch`` (default: the newest), shaped like the templates.

        ``params``, ``opt_state`` and ``key`` are templates (e.g. a fresh
        ``init_params`` and ``optimizer.init``) giving the tree structure, shapes
        and dtypes; ``key`` comes back typed if the template key is typed.
        """
        ocp = _ocp()
        if epoch is None:
            epoch = self.latest_epoch()
            if epoch is None:
                raise ValueError(f"no checkpoint in {self.directory}")
        elif epoch not in self._manager.all_steps():
            raise ValueError(
                f"no checkpoint of epoch {epoch} in {self.directory}; saved: {self.epochs()}"
            )
        self.check(epoch, params, opt_state, key)
        target = {"params": params, "opt_state": opt_state, "key": _key_data(key)}
        try:
            restored = self._manager.restore(
                epoch,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
                ),
            )
        except Exception as e:  # TensorStore, JSON; orbax wraps a failed read in a bare Exception
            cause = e.__cause__ if isinstance(e.__cause__, Exception) else e
            raise self._unreadable(epoch, f"reading it failed ({_first_line(cause)})") from None
        state, meta = restored["state"], restored["meta"]
        if not isinstance(meta, dict):
            raise self._unreadable(
                epoch, f"its meta is a JSON {type(meta).__name__}, not an object"
            )
        restored_key = state["key"]
        if _is_typed_key(key):
            restored_key = jax.random.wrap_key_data(restored_key, impl=jax.random.key_impl(key))
        return Restored(state["params"], state["opt_state"], restored_key, int(epoch), dict(meta))
