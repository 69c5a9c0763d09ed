"""Checkpoints of a training run, with orbax: params, optimizer state, RNG key, epoch.

A run's checkpoints live in one directory, one subdirectory per saved epoch.
Each save is atomic: orbax's ``CheckpointManager`` writes the step to a
temporary directory (``<epoch>.orbax-checkpoint-tmp-<time>``) and renames it
to ``<epoch>`` once complete, so a process killed mid-save leaves the previous
steps intact, and the unfinished temporary directory is removed on the next
open. (A rename is atomic on POSIX file systems; on object stores such as GCS,
orbax writes a commit file instead.) The newest ``max_to_keep`` (3) steps are
kept, and the steps named by ``keep`` (a run's best epoch, whatever its age); older
ones are deleted only after a newer one is complete.

Saves are asynchronous by default: ``save`` returns once the arrays are copied
off the device, and orbax writes and renames the step in a background thread
while training goes on (the next save waits for it). The rename still happens
only when the step is complete, so a kill at any moment leaves complete steps.

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
shapes and dtypes (orbax's ``item_metadata``) are checked against the template:
a mismatch is a ValueError naming each difference, and a step that is
truncated, damaged or not a jaxnn checkpoint is a ValueError naming the step
and what could not be read.

What is orbax's and what is jaxnn's: orbax writes, names, commits, lists, keeps
and restores the steps, and describes what a step holds. jaxnn does two things
itself, each for want of a public orbax API that does it:

* removing the saves a killed process left unfinished (``_remove_unfinished``):
  orbax's ``cleanup_tmp_directories`` does it in a background thread that only
  the next ``save`` waits for (through a private method), so a session that
  only restores would race it;
* reading every byte of a step's OCDBT store before orbax restores it
  (``_damage``): orbax reads the arrays concurrently and, when one read fails,
  wraps the error in a bare ``Exception`` while the other reads complain on
  stderr to an event loop it has closed. TensorStore, orbax's storage layer,
  reads the same store one value at a time, so a damaged step is one clear
  error.

Needs ``orbax-checkpoint``, an extra: ``pip install 'jaxnn[cli]'``.
"""

import json
import os
import shutil
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Checkpoints", "Restored", "save_due"]

_TMP_MARK = ".orbax-checkpoint-tmp"  # orbax's name for a save under way


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
    if key is None:
        return None  # saved and restored as an empty subtree
    # A host (NumPy) array: the key is the same on every process, so orbax's primary process
    # writes it once; a host-local jax.Array cannot be saved from several processes.
    return np.asarray(jax.random.key_data(key) if _is_typed_key(key) else key)


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


def _read_every_value(state_dir: str) -> str | None:
    """Read every value in the OCDBT store ``state_dir`` (its checksums checked), one at a
    time; None if all read, else a message naming what is unreadable."""
    import tensorstore as ts  # orbax's storage layer

    try:
        store = ts.KvStore.open({"driver": "ocdbt", "base": f"file://{state_dir}/"}).result()
        keys = store.list().result()
    except (ValueError, OSError, RuntimeError) as e:
        return f"its array store is unreadable ({_first_line(e)})"
    for key in keys:
        try:
            store.read(key).result()
        except (ValueError, OSError, RuntimeError) as e:
            return f"{key.decode(errors='replace')} is unreadable ({_first_line(e)})"
    return None


def _remove_unfinished(directory: str) -> list[str]:
    """Delete the saves a killed process left unfinished (``*.orbax-checkpoint-tmp*``),
    now: run when a run's checkpoints are opened, before anything else touches them.
    Returns the names removed. (Not orbax's ``cleanup_tmp_directories``: see the module
    docstring.)"""
    if not os.path.isdir(directory):
        return []
    names = [name for name in os.listdir(directory) if _TMP_MARK in name]
    for name in names:
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)
    return names


class _Kept:
    """orbax's preservation policy for the steps ``Checkpoints.keep`` names, besides the
    newest ``max_to_keep`` (orbax's ``PreservationPolicy`` protocol)."""

    def __init__(self) -> None:
        self.epochs: frozenset[int] = frozenset()

    def should_preserve(self, checkpoints, *, context) -> list[bool]:
        del context
        return [info.step in self.epochs for info in checkpoints]


def _make_manager(
    directory: str, max_to_keep: int, asynchronous: bool, kept: _Kept, read_only: bool
):
    """An orbax ``CheckpointManager`` for a run: a JSON ``meta`` item and a ``state`` item.

    Not orbax's own ``read_only`` option, which logs three warnings on every open: a
    read-only manager here is one that creates nothing and is never asked to save.
    """
    ocp = _ocp()
    from orbax.checkpoint import checkpoint_managers

    policy = checkpoint_managers.AnyPreservationPolicy(
        [checkpoint_managers.LatestN(max_to_keep), kept]
    )
    options = ocp.CheckpointManagerOptions(
        preservation_policy=policy,
        create=not read_only,
        enable_async_checkpointing=asynchronous and not read_only,
        cleanup_tmp_directories=False,  # done by _remove_unfinished, synchronously
    )
    return ocp.CheckpointManager(
        directory,
        options=options,
        item_handlers={
            "state": ocp.StandardCheckpointHandler(),
            "meta": ocp.JsonCheckpointHandler(),
        },
    )


def _damage(step: str) -> str | None:
    """What makes the step directory ``step`` unreadable, or None: its items, its JSON
    files parsed, and, in orbax's default OCDBT layout, every value of its array store
    read (in the other layout, one zarr directory per array, orbax alone reads them)."""
    missing = [item for item in ("state", "meta") if not os.path.isdir(f"{step}/{item}")]
    if missing:
        return f"it has no {' or '.join(missing)} directory"
    for name in ("state/_METADATA", "meta/metadata"):
        try:
            with open(f"{step}/{name}", "rb") as f:
                json.loads(f.read())
        except (OSError, ValueError) as e:
            return f"{name}: {_first_line(e)}"
    if os.path.isfile(f"{step}/state/manifest.ocdbt"):
        return _read_every_value(f"{step}/state")
    return None


def _mismatches(have: dict, want: dict) -> list[str]:
    """What differs between saved and expected {leaf name: (shape, dtype)}, params first."""
    problems = []
    for name in want:
        if name not in have:
            problems.append(f"{name} is missing there")
        elif have[name] != want[name]:
            problems.append(
                f"{name} has {_describe(have[name])} there, {_describe(want[name])} expected"
            )
    problems += [f"{name} is there but not expected" for name in have if name not in want]
    problems.sort(key=lambda p: not p.startswith("params"))  # the cause first
    return problems


def save_due(epoch: int, last_epoch: int, seconds_since_save: float, every: float) -> bool:
    """Whether ``jaxnn train`` saves after ``epoch``: always after the last epoch, and
    otherwise once ``every`` seconds have passed since the previous save (0: every epoch).

    A signal saves the epoch in hand too (the caller's business). Losing the epochs
    since the last save costs only time: ``--resume`` recomputes them bitwise.
    """
    return epoch >= last_epoch or seconds_since_save >= every


class Checkpoints:
    """The checkpoints of one run, in ``directory``; the newest ``max_to_keep`` kept.

    With ``asynchronous=True`` (the default), ``save`` returns as soon as the
    arrays are copied off the device and orbax writes them in a background
    thread, while training goes on; the next ``save``, ``wait`` and ``close``
    wait for it. Each save stays atomic (see the module docstring).

    With ``read_only=True`` the checkpoints are opened to restore only (e.g. by
    ``jaxnn.load_run`` while a run may still be writing them): nothing is created or
    removed, not even a killed process's unfinished save, and ``save`` is an error.

    Example:
      >>> with Checkpoints("runs/x/checkpoints") as ckpts:
      ...     ckpts.save(epoch, params, opt_state, key, {"history": history})
      ...     restored = ckpts.restore(params, opt_state, key)
    """

    def __init__(
        self,
        directory: str | os.PathLike,
        max_to_keep: int = 3,
        *,
        asynchronous: bool = True,
        read_only: bool = False,
    ) -> None:
        self.directory = os.path.abspath(os.fspath(directory))
        if os.path.exists(self.directory) and not os.path.isdir(self.directory):
            raise ValueError(f"checkpoint directory {self.directory} is a file")
        if read_only and not os.path.isdir(self.directory):
            raise ValueError(f"no checkpoint directory {self.directory}")
        self.read_only = read_only
        if not read_only:
            _remove_unfinished(self.directory)
        self._kept = _Kept()
        self._manager = _make_manager(
            self.directory, max_to_keep, asynchronous, self._kept, read_only
        )

    def __enter__(self) -> "Checkpoints":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Wait for a save under way, then release orbax's resources."""
        self._manager.close()

    def wait(self) -> None:
        """Return once every save so far is complete on disk."""
        self._manager.wait_until_finished()

    def epochs(self) -> list[int]:
        """The saved epochs, oldest first (a save under way is not listed until complete)."""
        return sorted(self._manager.all_steps())

    def latest_epoch(self) -> int | None:
        """The newest saved epoch, or None if there is none."""
        return self._manager.latest_step()

    def keep(self, *epochs: int) -> None:
        """Keep the steps of ``epochs`` besides the newest ``max_to_keep``, from the next
        save on (e.g. a run's best epoch on its validation set); none: keep only the
        newest. Replaces the epochs kept before, which the next save may then delete."""
        self._kept.epochs = frozenset(int(e) for e in epochs)

    def save(
        self,
        epoch: int,
        params: Any,
        opt_state: Any = None,
        key: jax.Array | None = None,
        meta: dict | None = None,
    ) -> None:
        """Save the state after ``epoch`` epochs; with ``asynchronous``, written in the
        background (``wait`` for it), otherwise on disk when this returns.

        ``opt_state`` and ``key`` are optional: None saves none (an empty subtree).
        ``meta`` must be JSON-able; it is copied now, so the caller may change it.
        """
        if self.read_only:
            raise ValueError(f"{self.directory} was opened read-only; it cannot save")
        ocp = _ocp()
        state = {"params": params, "opt_state": opt_state, "key": _key_data(key)}
        meta = json.loads(json.dumps({**(meta or {}), "epoch": int(epoch)}))
        self._manager.save(
            int(epoch),
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            force=True,
        )

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
        """{leaf name: (shape, dtype)} of the saved state, from orbax's metadata, once
        every byte of the step has been read (``_damage``)."""
        damage = _damage(self._step_dir(epoch))
        if damage:
            raise self._unreadable(epoch, damage)
        try:
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

    def check(self, epoch: int, params: Any, opt_state: Any, key: jax.Array | None) -> None:
        """Raise ValueError unless the saved arrays have the template's paths, shapes, dtypes."""
        have = self._saved_specs(epoch)
        if not have:
            raise self._unreadable(epoch, "it holds no arrays")
        want = _leaf_specs({"params": params, "opt_state": opt_state, "key": _key_data(key)})
        problems = _mismatches(have, want)
        if problems:
            more = f"; and {len(problems) - 4} more" if len(problems) > 4 else ""
            raise ValueError(
                f"checkpoint {self.directory} (epoch {epoch}) does not match the network and "
                f"optimizer: {'; '.join(problems[:4])}{more}"
            )

    def _resolve_epoch(self, epoch: int | None) -> int:
        if epoch is None:
            epoch = self.latest_epoch()
            if epoch is None:
                raise ValueError(f"no checkpoint in {self.directory}")
        elif epoch not in self._manager.all_steps():
            raise ValueError(
                f"no checkpoint of epoch {epoch} in {self.directory}; saved: {self.epochs()}"
            )
        return epoch

    def restore(
        self,
        params: Any,
        opt_state: Any = None,
        key: jax.Array | None = None,
        epoch: int | None = None,
    ) -> Restored:
        """The saved state of ``epoch`` (default: the newest), shaped like the templates.

        ``params``, ``opt_state`` and ``key`` are templates (e.g. a fresh
        ``init_params`` and ``optimizer.init``) giving the tree structure, shapes
        and dtypes; ``key`` comes back typed if the template key is typed. Leave
        ``opt_state`` or ``key`` None for a step saved without them.
        """
        ocp = _ocp()
        epoch = self._resolve_epoch(epoch)
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
        if key is not None and _is_typed_key(key):
            restored_key = jax.random.wrap_key_data(restored_key, impl=jax.random.key_impl(key))
        return Restored(state["params"], state["opt_state"], restored_key, int(epoch), dict(meta))
