"""Test configuration: float64, exact matmuls, no silent rank promotion, and a
compilation cache of the tests' own.

x64 lets gradient comparisons reach 1e-10; "highest" matmul precision makes a GPU
or TPU give the CPU's answers; rank promotion raises so a bias of shape (n,)
added to (n, m) is caught instead of broadcast. The ``torch`` fixture gives PyTorch
to the tests that compare with it: a skip where it is not installed, a failure under
CI (``torch_required``).

The tests compile thousands of small programs, and XLA's compile is most of their
time: JAX's persistent compilation cache, in ``.pytest_cache/jax-compilation-cache``
(git ignores it; safe to delete), serves them to the next run (measured on
tests/test_backprop.py: 60 s of CPU cold, 21 s warm). ``JAXNN_TEST_COMPILATION_CACHE=0``
turns it off. It is this process's only; the processes the tests start use their own.
"""

import os
import pathlib

import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_numpy_rank_promotion", "raise")

COMPILATION_CACHE = (
    pathlib.Path(__file__).resolve().parent.parent / ".pytest_cache" / "jax-compilation-cache"
)


def use_compilation_cache() -> None:
    """Keep every program this process compiles in ``COMPILATION_CACHE``.

    pytest-xdist's workers share the directory. JAX takes no lock there without a size
    limit (with one, it lists the whole directory at every write: the suite's system
    time went from 14 s to 171 s), so a worker may read an entry another is still
    writing; JAX then warns and compiles, and pyproject.toml's ``filterwarnings`` lets
    that warning pass.
    """
    if os.environ.get("JAXNN_TEST_COMPILATION_CACHE", "1") == "0":
        return
    jax.config.update("jax_compilation_cache_dir", str(COMPILATION_CACHE))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


use_compilation_cache()


@pytest.fixture(autouse=True, scope="session")
def compilation_cache_opened():
    """JAX opens its cache at the first compile, in the directory set then, and keeps it:
    compile once before any test, so that a ``jaxnn train`` run in this process (which
    points the setting at its own directory) cannot be the one that opens it."""
    jax.jit(lambda x: x + 1)(1.0)


CACHE_SETTINGS = (
    "jax_enable_compilation_cache",
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


@pytest.fixture(autouse=True)
def keep_cache_settings():
    """The compilation cache's settings as they were before each test: a ``jaxnn train``
    run in this process (``jaxnn.cli.cache.enable``) sets them for its own process, and
    ``--no-compilation-cache`` would otherwise turn the cache off for every later test."""
    saved = {name: getattr(jax.config, name) for name in CACHE_SETTINGS}
    yield
    for name, value in saved.items():
        if getattr(jax.config, name) != value:
            jax.config.update(name, value)


@pytest.fixture(autouse=True, scope="session")
def private_caches(tmp_path_factory):
    """The caches of ``jaxnn train`` runs in these tests (its programs kept with
    ``jax.export``, and JAX's own in the processes the tests start) go to a directory of
    the session, never to the user's own."""
    saved = {k: os.environ.get(k) for k in ("XDG_CACHE_HOME", "JAX_COMPILATION_CACHE_DIR")}
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    os.environ.pop("JAX_COMPILATION_CACHE_DIR", None)
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


def torch_required() -> bool:
    """True under CI (``CI=true``, or ``JAXNN_REQUIRE_TORCH=1``, which ``.ci/run`` sets):
    there, a missing PyTorch fails the tests that use it instead of skipping them."""
    ci = os.environ.get("CI", "").lower() in ("1", "true")
    return ci or os.environ.get("JAXNN_REQUIRE_TORCH") == "1"


@pytest.fixture(scope="session")
def torch():
    """The ``torch`` module: PyTorch is no dependency of jaxnn, so a missing one skips the
    test, except under CI (``torch_required``), where it fails it."""
    if not torch_required():
        return pytest.importorskip("torch")
    try:
        import torch
    except ImportError as e:
        pytest.fail(f"PyTorch is required under CI (CI or JAXNN_REQUIRE_TORCH is set): {e}")
    return torch
