"""Traced programs kept on disk with ``jax.export``: a later process skips the tracing.

JAX's persistent compilation cache spares a second run XLA's compile, but not the
Python before it: ``jax.jit`` still traces the function and lowers it to StableHLO
to find the cache entry, about 0.3 s for ``fit``'s start and epoch on the default
network. A ``ProgramCache`` keeps each program as JAX exports it
(``jax.export.Exported.serialize``: StableHLO and its types in a flatbuffer, no
pickle), so the next process deserializes it, lowers it without tracing, and JAX's
persistent cache (where enabled) serves the compile.

A program here is a function of a flat list of arrays to a flat list of arrays:
the caller flattens and unflattens its pytrees (``jaxnn.train`` knows its own).

The key of a program (``ProgramCache.key``) is a SHA-256 of its ``name`` (what it
closes over: ``fit`` names the network, batch size, gradients, mesh and the
optimizer's ``fingerprint``), the cache's ``recipe``, the arguments' types and
shardings, and ``environment()``: the source of every jaxnn module, the versions
of jax, jaxlib and optax, every ``jax.config`` value in force, ``XLA_FLAGS``, the
backend and its devices. A StableHLO module does not depend on the host's CPU
model; XLA's compile of it does, and JAX's own cache keys that.

Only the user's own files are read: the directory and every file are opened
without following links, and a directory or file that another user owns or that
others may write, a file whose checksum does not match, or one that JAX cannot
deserialize is ignored, and the program traced again. Writes are atomic (a
temporary file, then a rename); the newest ``max_entries`` files are kept.

This module never prints and changes no global state.
"""

import functools
import hashlib
import os
import pathlib
import stat
import tempfile
import threading
from collections.abc import Callable, Sequence

import jax

__all__ = ["ProgramCache", "environment", "fingerprint", "source_digest"]

_MAGIC = b"jaxnn-exported-1\n"
_SUFFIX = ".jaxexport"


@functools.cache
def source_digest() -> str:
    """SHA-256 of the source of every module of the installed ``jaxnn`` package."""
    root = pathlib.Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def environment() -> str:
    """Everything outside a program's code and arguments that changes what it lowers
    to, read in the calling thread (with its ``jax.enable_x64`` or
    ``jax.default_matmul_precision`` contexts)."""
    import jaxlib
    import optax

    config = {
        k: repr(v)
        for k, v in jax.config.values.items()
        if "cache" not in k and not k.startswith("jax_log")
    }
    devices = jax.devices()
    backend = devices[0].client
    return repr(
        (
            source_digest(),
            jax.__version__,
            jaxlib.__version__,
            optax.__version__,
            sorted(config.items()),
            [os.environ.get(name, "") for name in ("XLA_FLAGS", "LIBTPU_INIT_ARGS")],
            backend.platform,
            backend.platform_version,
            [d.device_kind for d in devices],
            jax.process_count(),
        )
    )


def fingerprint(obj: object) -> str:
    """A SHA-256 of what a function computes, read from its code and the values it
    closes over (numbers, arrays, strings, nested functions and tuples), without
    tracing it: two optax transformations that differ in a hyperparameter differ here.

    Raises TypeError on a value it cannot read (then trace it instead, or give the
    difference in the cache's recipe).
    """
    h = hashlib.sha256()
    _feed(h, obj, set())
    return h.hexdigest()


def _feed(h, obj, seen: set) -> None:
    import numpy as np

    if isinstance(obj, (bool, int, float, complex, str, bytes, type(None))):
        h.update(repr((type(obj).__name__, obj)).encode())
    elif isinstance(obj, (np.ndarray, np.generic, jax.Array)):
        value = np.asarray(obj)
        h.update(repr((value.dtype, value.shape)).encode() + value.tobytes())
    elif isinstance(obj, (tuple, list)):
        h.update(f"{type(obj).__qualname__}[{len(obj)}]".encode())
        for item in obj:
            _feed(h, item, seen)
    elif isinstance(obj, dict):
        h.update(f"dict[{len(obj)}]".encode())
        for k in sorted(obj, key=repr):
            _feed(h, k, seen)
            _feed(h, obj[k], seen)
    elif isinstance(obj, functools.partial):
        _feed(h, (obj.func, obj.args, obj.keywords), seen)
    elif callable(obj) and hasattr(obj, "__code__"):
        if id(obj) in seen:  # recursion
            h.update(b"<seen>")
            return
        seen.add(id(obj))
        code = obj.__code__
        h.update(f"{obj.__module__}.{obj.__qualname__}".encode())
        _feed_code(h, code)
        cells = [c.cell_contents for c in obj.__closure__ or () if _filled(c)]
        _feed(h, (cells, obj.__defaults__, obj.__kwdefaults__), seen)
        # Globals the code reads that are plain values (module constants) count too.
        values = [(n, obj.__globals__[n]) for n in code.co_names if n in obj.__globals__]
        for name, value in values:
            if isinstance(value, (bool, int, float, str, tuple)):
                _feed(h, (name, value), seen)
    elif callable(obj) and getattr(obj, "__module__", None) and hasattr(obj, "__qualname__"):
        h.update(f"{obj.__module__}.{obj.__qualname__}".encode())  # a builtin or a class
    else:
        raise TypeError(f"cannot fingerprint a {type(obj).__name__}")


def _feed_code(h, code) -> None:
    h.update(code.co_code)
    for const in code.co_consts:
        if hasattr(const, "co_code"):
            _feed_code(h, const)
        else:
            h.update(repr(const).encode())


def _filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:  # an empty cell
        return False
    return True


class ProgramCache:
    """Exported programs on disk, found by what defines them (see the module docstring).

    Args:
      directory: where the programs live; created (mode 0700) at the first write.
      recipe: what the programs close over that neither their arguments nor their
        names show.
      max_entries: keep the newest this many programs, delete older ones.

    ``hits`` and ``misses`` count this object's loads and exports.

    Example:
      >>> cache = ProgramCache("/tmp/programs", recipe="adam 0.001")
      >>> [f] = cache.compile_many([(jax.jit(lambda x: [2 * x]), [x], "double")])
      >>> f(x)  # [2 * x], from disk in the next process
    """

    def __init__(self, directory: str, recipe: str = "", max_entries: int = 64):
        self.directory, self.recipe, self.max_entries = directory, recipe, max_entries
        self.hits = self.misses = 0
        self._memory: dict[str, Callable] = {}
        self._lock = threading.Lock()

    def key(self, name: str, args: Sequence, env: str | None = None) -> str:
        """The SHA-256 that names the file of program ``name`` on ``args``."""
        types = [(str(jax.typeof(x)), repr(getattr(x, "sharding", None))) for x in args]
        parts = (name, self.recipe, types, env or environment())
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def path(self, key: str) -> pathlib.Path:
        """The file of the program with this key."""
        return pathlib.Path(self.directory) / (key + _SUFFIX)

    def compile_many(self, requests: Sequence[tuple]) -> list[Callable]:
        """Each ``(fun, args, name)`` or ``(fun, args, name, compiler_options)`` as a
        compiled function of ``args``' types, in order.

        ``fun``: a ``jax.jit`` of a function of a flat list of arrays (its
        ``in_shardings`` and ``out_shardings`` are kept in the export);
        ``args``: arrays or ``jax.ShapeDtypeStruct``s (with their shardings);
        ``compiler_options``: XLA's, as ``jax.jit`` takes them. Deserialized from
        the directory when found there (no tracing), else exported (traced once)
        and stored. The compiles run in threads, so several happen at once.
        """
        from concurrent.futures import ThreadPoolExecutor

        env = environment()
        built = []
        for request in requests:
            fun, args, name, options = (*request, None)[:4]
            args = list(args)
            key = self.key(name, args, env)
            with self._lock:
                known = self._memory.get(key)
            if known is not None:
                built.append((key, known, None))
                continue
            exported = self._load(key)
            if exported is None:
                exported = _export(fun, args)
                self.misses += 1
                if exported is None:  # not exportable: compiled here, unstored
                    built.append((key, fun, fun.lower(*args)))
                    continue
                self._store(key, exported)
            else:
                self.hits += 1
            program = jax.jit(exported.call, compiler_options=options)
            built.append((key, program, program.lower(*args)))
        with ThreadPoolExecutor(max(1, len(built))) as pool:
            compiled = list(pool.map(lambda b: b[1] if b[2] is None else b[2].compile(), built))
        with self._lock:
            for (key, _, _), program in zip(built, compiled, strict=True):
                self._memory[key] = program
        return compiled

    def _load(self, key: str):
        """The exported program of ``key`` from the directory, or None (see the docstring)."""
        blob = _read_private(self.directory, key + _SUFFIX)
        if blob is None or len(blob) < len(_MAGIC) + 32 or not blob.startswith(_MAGIC):
            return None
        digest, payload = blob[len(_MAGIC) : len(_MAGIC) + 32], blob[len(_MAGIC) + 32 :]
        if hashlib.sha256(payload).digest() != digest:
            return None
        try:
            exported = jax.export.deserialize(bytearray(payload))
        except Exception:  # another jax's format: export afresh
            return None
        try:
            os.utime(self.path(key), follow_symlinks=False)  # recently used: evicted last
        except OSError:
            pass
        return exported

    def _store(self, key: str, exported) -> None:
        """Write a program atomically, unless the directory is not the user's own or
        JAX cannot serialize it here (its serialization needs ``flatbuffers``, in
        ``jaxnn[cli]``)."""
        try:
            payload = exported.serialize()
        except ImportError:
            return
        try:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            if not _private_dir(self.directory):
                return
            fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(_MAGIC + hashlib.sha256(payload).digest() + payload)
                os.replace(tmp, self.path(key))
            except BaseException:
                os.unlink(tmp)
                raise
            self._evict()
        except OSError:  # no room, read-only: the program still runs, unstored
            pass

    def _evict(self) -> None:
        files = sorted(pathlib.Path(self.directory).glob("*" + _SUFFIX), key=_mtime, reverse=True)
        for old in files[self.max_entries :]:
            old.unlink(missing_ok=True)


def _export(fun: Callable, args: list):
    """``jax.export.export(fun)(*args)``, or None where JAX cannot export it (a host
    callback, say); a program that cannot even be traced raises again when compiled."""
    try:
        return jax.export.export(fun)(*args)
    except Exception:
        return None


def _mtime(path: pathlib.Path) -> float:
    try:
        return path.lstat().st_mtime
    except FileNotFoundError:
        return 0.0


def _owned(st: os.stat_result) -> bool:
    """This user's own, and writable by nobody else."""
    mine = st.st_uid == os.geteuid() if hasattr(os, "geteuid") else True
    return mine and not st.st_mode & 0o022


def _private_dir(directory: str) -> bool:
    """Whether ``directory`` and every directory above it are safe to read programs
    from: the directory is this user's own and writable by nobody else; each parent
    is this user's or root's and writable by nobody else, or sticky (as /tmp is)."""
    path = pathlib.Path(directory).absolute()
    try:
        st = os.lstat(path)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode) or not _owned(st):
        return False
    for parent in path.parents:
        try:
            st = os.stat(parent)
        except OSError:
            return False
        owner_ok = st.st_uid in (0, os.geteuid()) if hasattr(os, "geteuid") else True
        if not owner_ok or (st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX):
            return False
    return True


def _read_private(directory: str, name: str) -> bytes | None:
    """The bytes of ``directory/name`` if both are the user's own (checked on the
    opened file, not on its name), else None."""
    if not _private_dir(directory):
        return None
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(os.path.join(directory, name), flags)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode) or not _owned(st):
            return None
        return f.read()
