"""Checkpoints of a training run, with orbax: params, optimizer state, RNG key, epoch.

A run's checkpoints live in one directory, one subdirectory per saved epoch.
Each save is atomic: orbax's ``CheckpointManager`` writes the step to a
temporary directory and renames it into place once complete, so a crash leaves
the previous steps intact (an unfinished temporary directory is cleaned up on
the next open). The newest ``max_to_keep`` (3) steps are kept.

A step holds two items:

* ``state``: the arrays, ``{"params", "opt_state", "key"}``, written by
  orbax's ``StandardCheckpointHandler`` (array files plus JSON metadata);
* ``meta``: a JSON document (``epoch``, and whatever the caller adds, e.g. the
  history).

Restoring reads array data and JSON only: nothing is unpickled, no code runs.
Before reading, the saved arrays' paths, shapes and dtypes are checked against
the caller's template, and a mismatch is a ValueError naming each difference.

Needs ``orbax-checkpoint``, an extra: ``pip install 'jaxnn[cli]'``.
"""

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

    def check(self, epoch: int, params, opt_state, key) -> None:
        """Raise ValueError unless the saved arrays have the template's paths, shapes, dtypes."""
        saved = self._manager.item_metadata(epoch)["state"]
        if saved is None:
            raise ValueError(f"checkpoint {self.directory} epoch {epoch} has no state to restore")
        tree = saved.tree if hasattr(saved, "tree") else saved
        have = {
            _path_name(path): (tuple(leaf.shape), np.dtype(leaf.dtype))
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        }
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
        restored = self._manager.restore(
            epoch,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), meta=ocp.args.JsonRestore()
            ),
        )
        state, meta = restored["state"], restored["meta"]
        restored_key = state["key"]
        if _is_typed_key(key):
            restored_key = jax.random.wrap_key_data(restored_key, impl=jax.random.key_impl(key))
        return Restored(state["params"], state["opt_state"], restored_key, int(epoch), dict(meta))
