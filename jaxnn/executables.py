"""Compiled programs kept on disk: a later process runs them without tracing them again.

JAX's persistent compilation cache spares a second run the XLA compile, but not
the Python work before it: ``jax.jit`` still traces the function and lowers it to
StableHLO to find the cache entry, about 0.4 s for ``fit``'s start and epoch on
the default network (the 40 epochs themselves take about 0.6 s). An
``ExecutableCache`` keeps the compiled executable itself
(``jax.experimental.serialize_executable``) under a key made of everything that
defines the program, so the next process loads it (about 0.07 s each) and calls it.

The key (``ExecutableCache.key``) is a SHA-256 of:

* the program's ``name`` and the cache's ``recipe``: what the program closes
  over that its arguments do not show (``fit`` names the network, batch size and
  gradients; the caller's recipe must describe the optimizer);
* the arguments: the tree structure and each leaf's type, shape, dtype and
  sharding (``jax.typeof``), not their values; XLA's compiler options, if given;
* the source of every module of the ``jaxnn`` package, the versions of jax,
  jaxlib and optax, every ``jax.config`` value in force in the calling thread
  except those about caches and logging, ``XLA_FLAGS`` and ``LIBTPU_INIT_ARGS``,
  and the backend (platform, its version, the devices' kinds and number, the
  number of processes, the threads of XLA's CPU pool).

``fit`` adds to its programs' names the network, the batch size, the gradients
and the ``fingerprint`` of the optimizer's ``init`` and ``update`` (their traced
programs and constants), so a recipe that forgot a hyperparameter still cannot
load another optimizer's program.

So a change to any of them compiles afresh. A file that is missing, truncated or
not loadable is compiled afresh and rewritten (each file carries the SHA-256 of
its contents); every write is atomic (a temporary file, then a rename). The
newest ``max_entries`` files are kept.

Each program stored is compiled here, under a name no compilation had before, and
JAX's own cache neither serves it nor writes it: on the CPU, an executable that
JAX's cache loaded serializes without its kernels (jax 0.10.2), and its copy would
fail at its first call in the next process. ``compile_many`` loads or compiles
several programs at once, a thread each.

.. warning::
   A serialized executable is loaded with ``pickle`` (JAX's own format for it)
   and runs machine code: the directory must be the user's own. It is created
   with mode 0700, and a directory that another user owns or that others may
   write is neither read nor written (programs are then compiled every time).

This module never prints.
"""

import contextlib
import functools
import hashlib
import math
import os
import pathlib
import pickle
import tempfile
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

import jax
import numpy as np

MAGIC = b"jaxnn-executable-1\n"
SUFFIX = ".exe"


@functools.cache
def source_digest() -> str:
    """SHA-256 of the source of every module of the installed ``jaxnn`` package."""
    root = pathlib.Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def environment() -> str:
    """Everything outside a program's own code and arguments that changes what it
    compiles to, read in the calling thread (so with its ``jax.enable_x64`` or
    ``jax.default_matmul_precision`` contexts)."""
    import jaxlib
    import optax

    config = {
        k: repr(v)
        for k, v in jax.config.values.items()
        if "cache" not in k and not k.startswith("jax_log")
    }
    from jaxnn.cpu_threads import pool_threads

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
            pool_threads(),  # XLA compiles for its CPU pool's size (jaxnn.cpu_threads)
        )
    )


def fingerprint(fun: Callable, *args) -> str:
    """A SHA-256 of ``fun``'s traced program on ``args`` (types suffice): its jaxpr,
    literals included, and the values of the constants it closes over. Two
    optimizers that differ in a hyperparameter differ here (about 10 ms to trace)."""
    return fingerprint_and_types(fun, *args)[0]


def fingerprint_and_types(fun: Callable, *args) -> tuple[str, Any]:
    """``(fingerprint(fun, *args), the types of fun's outputs)`` from one trace:
    the outputs as a tree of ``jax.ShapeDtypeStruct``, as ``jax.eval_shape`` gives."""
    closed, types = jax.make_jaxpr(fun, return_shape=True)(*args)
    h = hashlib.sha256(str(closed.jaxpr).encode())
    for const in closed.consts:
        value = np.asarray(const)
        h.update(repr((value.dtype, value.shape)).encode() + value.tobytes())
    return h.hexdigest(), types


def signature(args) -> str:
    """The arguments' tree structure and each leaf's type (shape, dtype, sharding)."""
    leaves, tree = jax.tree.flatten(args)
    types = [(str(jax.typeof(x)), repr(getattr(x, "sharding", None))) for x in leaves]
    return repr((str(tree), types))


class Request(NamedTuple):
    """A program for ``ExecutableCache.compile_many``: ``fun`` on ``args``, named
    ``name``, compiled with XLA's ``compiler_options`` (as ``jax.jit``'s)."""

    fun: Callable
    args: tuple
    name: str
    compiler_options: dict | None = None


class ExecutableCache:
    """Compiled programs on disk, found by what defines them (see the module docstring).

    Args:
      directory: where the executables live; created (mode 0700) at the first write.
      recipe: what the programs close over that neither their arguments nor their
        names show, e.g. the optimizer and its hyperparameters. Two programs
        with the same name, recipe and argument types must be the same program
        (``fit`` puts the network, batch size, gradients and the optimizer's
        ``fingerprint`` in its names, so its programs do not rely on the recipe).
      max_entries: keep the newest this many executables, delete older ones.

    ``hits`` and ``misses`` count this object's loads and compilations.

    Example:
      >>> cache = ExecutableCache("/tmp/exe", recipe="adam 0.001")
      >>> step = cache.compile(jax.jit(f), (params, X), name="step")  # f(params, X)
    """

    def __init__(self, directory: str, recipe: str, max_entries: int = 64):
        self.directory, self.recipe, self.max_entries = directory, recipe, max_entries
        self.hits = self.misses = 0
        self._memory = {}  # key -> executable, for later calls in this process
        self._lock = threading.Lock()

    def key(self, name: str, args, env: str | None = None, compiler_options=None) -> str:
        """The SHA-256 that names the file of program ``name`` on ``args``, compiled
        with XLA's ``compiler_options`` (``env``: ``environment()``, read now if not given)."""
        options = sorted((compiler_options or {}).items())
        parts = (name, self.recipe, signature(args), env or environment(), options)
        return hashlib.sha256(repr(parts).encode()).hexdigest()

    def path(self, name: str, args, compiler_options=None) -> str:
        """The file that holds program ``name`` on ``args``."""
        return self._file(self.key(name, args, compiler_options=compiler_options))

    def _file(self, key: str) -> str:
        return os.path.join(self.directory, key + SUFFIX)

    def compile(
        self, fun: Callable, args: tuple, *, name: str, compiler_options: dict | None = None
    ) -> Callable:
        """``fun`` compiled for ``args`` (a tuple of positional arguments): loaded from
        the directory if there, else traced, compiled and stored. Returns a
        ``jax.stages.Compiled``, called with arguments of the same types.

        ``fun``: a function of ``args`` alone (a ``jax.jit`` of one is fine: it is
        inlined, so give its XLA options as ``compiler_options``, as for
        ``jax.jit``). ``args`` may hold ``jax.ShapeDtypeStruct`` leaves: only their
        types count.
        """
        return self.compile_many([(fun, args, name, compiler_options)])[0]

    def compile_many(self, requests) -> list:
        """``compile`` of each ``(fun, args, name)`` or ``(fun, args, name,
        compiler_options)`` in ``requests``, in order.

        The keys, the tracing and the lowering happen in the calling thread, under
        its JAX settings (``jax.enable_x64``, ``jax.default_matmul_precision``,
        ``jax.default_device`` contexts); the loads and XLA's compiles, which do
        not hold the GIL, in a thread each, so several programs compile at once.
        """
        requests = [Request(*r) for r in requests]
        env = environment()  # once: the same for every request
        keys = [self.key(r.name, r.args, env, r.compiler_options) for r in requests]
        with _no_jax_cache_writes(), ThreadPoolExecutor(len(requests)) as pool:
            found = list(pool.map(self._find, keys))
            built = {
                i: pool.submit(self._build, _lower(r, key), key)
                for i, (r, key) in enumerate(zip(requests, keys, strict=True))
                if found[i] is None
            }
            programs = [built[i].result() if i in built else found[i] for i in range(len(keys))]
        with self._lock:
            for i, key in enumerate(keys):
                if key not in self._memory:  # loaded from the directory, or compiled
                    self.misses += i in built
                    self.hits += i not in built
                self._memory[key] = programs[i]
        return programs

    def _find(self, key: str):
        """The program of ``key`` from memory or the directory (refreshing its age), or None."""
        if key in self._memory:
            return self._memory[key]
        if not _private(self.directory):
            return None
        path = self._file(key)
        program = _load(path)
        if program is not None:
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: evicted last
        return program

    def _build(self, lowered, key: str):
        """``lowered`` compiled, and stored if XLA compiled it here (see ``_lower``)."""
        _listen()
        before = getattr(_jax_cache, "hits", 0)
        program = lowered.compile()
        if getattr(_jax_cache, "hits", 0) == before and _private(self.directory):
            try:
                _store(self._file(key), program)
                self._evict()
            except Exception:  # not serializable (e.g. a host callback), no room: unstored
                pass
        return program

    def _evict(self) -> None:
        files = sorted(pathlib.Path(self.directory).glob("*" + SUFFIX), key=_mtime, reverse=True)
        for old in files[self.max_entries :]:
            old.unlink(missing_ok=True)


def _mtime(path: pathlib.Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


# JAX's compilation cache hits, counted per thread (jax.monitoring has no unregister).
_jax_cache = threading.local()


def _count_jax_cache_hit(event: str, **kwargs) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _jax_cache.hits = getattr(_jax_cache, "hits", 0) + 1


@functools.cache
def _listen() -> None:
    jax.monitoring.register_event_listener(_count_jax_cache_hit)


_MIN_COMPILE_TIME = "jax_persistent_cache_min_compile_time_secs"
_writes_off = {"depth": 0, "saved": None, "lock": threading.Lock()}


@contextlib.contextmanager
def _no_jax_cache_writes():
    """JAX's compilation cache writes none of the programs compiled here: each has a
    name of its own (see ``_compile``), which no later lookup would ask for.

    The setting is global: a program that another thread compiles meanwhile is not
    written either (only compiled again by a later process). Nested and
    concurrent uses restore it once, when the last ends.
    """
    state = _writes_off
    with state["lock"]:
        if state["depth"] == 0:
            state["saved"] = jax.config.values[_MIN_COMPILE_TIME]
            jax.config.update(_MIN_COMPILE_TIME, math.inf)
        state["depth"] += 1
    try:
        yield
    finally:
        with state["lock"]:
            state["depth"] -= 1
            if state["depth"] == 0:
                jax.config.update(_MIN_COMPILE_TIME, state["saved"])


def _lower(request: "Request", key: str):
    """The request's function traced and lowered for its arguments under a name of its own.

    Only an executable that XLA compiled here may be stored: one that JAX's cache
    loaded serializes without its kernels on the CPU (jax 0.10.2: the copy fails at
    its first call with "Function ... not found"). A name no compilation had before
    (the key and a random suffix) keeps JAX's cache from serving it; ``_build``
    checks, through ``jax.monitoring``, that it did not.
    """

    fun = request.fun

    def program(*a):
        return fun(*a)

    name = getattr(fun, "__name__", "program")
    program.__name__ = program.__qualname__ = f"{name}_{key[:16]}_{uuid.uuid4().hex[:8]}"
    return jax.jit(program, compiler_options=request.compiler_options).lower(*request.args)


def _private(directory: str) -> bool:
    """Whether ``directory`` is safe to unpickle from: missing (``_store`` creates it
    0700), or this user's own and writable by nobody else."""
    try:
        st = os.stat(directory)
    except FileNotFoundError:
        return True
    owner = st.st_uid == os.geteuid() if hasattr(os, "geteuid") else True
    return owner and not st.st_mode & 0o022


def _load(path: str):
    """The executable stored at ``path``, or None if missing or not sound."""
    from jax.experimental import serialize_executable

    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    head = len(MAGIC) + 32
    payload = blob[head:]
    if blob[: len(MAGIC)] != MAGIC or blob[len(MAGIC) : head] != hashlib.sha256(payload).digest():
        return None
    try:
        serialized, in_tree, out_tree = pickle.loads(payload)
        return serialize_executable.deserialize_and_load(serialized, in_tree, out_tree)
    except Exception:  # another jaxlib's format, a stale class: compile afresh
        return None


def _store(path: str, compiled) -> None:
    from jax.experimental import serialize_executable

    payload = pickle.dumps(serialize_executable.serialize(compiled))
    directory = os.path.dirname(path)
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(MAGIC + hashlib.sha256(payload).digest() + payload)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
