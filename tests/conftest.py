"""Test configuration: float64, exact matmuls, no silent rank promotion, and a
compilation cache of the tests' own.

x64 lets gradient comparisons reach 1e-10; "highest" matmul precision makes a GPU
or TPU give the CPU's answers; rank promotion raises so a bias of shape (n,)
added to (n, m) is caught instead of broadcast. The ``torch`` fixture gives PyTorch
to the tests that compare with it: a skip where it is not installed, a failure under
CI (``torch_required``). Property tests draw the examples of a hypothesis profile: few in
the inner loop, the full set under CI (``JAXNN_HYPOTHESIS_PROFILE``, below).

The tests compile thousands of small programs, and XLA's compile is most of their
time: it runs with XLA's CPU optimisations off (``fast_compiles``, below), and JAX's
persistent compilation cache, in ``.pytest_cache/jax-compilation-cache``
(git ignores it; safe to delete), serves them to the next run (measured on
tests/test_backprop.py: 60 s of CPU cold, 21 s warm). ``JAXNN_TEST_COMPILATION_CACHE=0``
turns it off. It is this process's only; the processes the tests start use their own.
"""

import os
import pathlib

import hypothesis
import jax
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")
jax.config.update("jax_numpy_rank_promotion", "raise")

ROOT = pathlib.Path(__file__).resolve().parent.parent
COMPILATION_CACHE = ROOT / ".pytest_cache" / "jax-compilation-cache"


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


# XLA's CPU fusion emitters off: with LLVM's level 0 (below), a third of the compile time
# left, as tests/helpers.py's fast_jit. Through XLA_FLAGS, as XLA has no other
# process-wide way; XLA stops a process on a flag it does not know, so it is given only
# to the jaxlib that constraints.txt pins (CI's).
FUSION_EMITTERS_OFF = "--xla_cpu_use_fusion_emitters=false"


def pinned_jaxlib() -> bool:
    """True when the installed jaxlib is the version constraints.txt pins."""
    import jaxlib

    pins = (ROOT / "constraints.txt").read_text().split()
    return f"jaxlib=={jaxlib.__version__}" in pins


def fast_compiles() -> None:
    """Compile every program of this process with XLA's CPU optimisations off, as
    ``jaxnn verify`` and tests/helpers.py's ``fast_jit`` do, unless
    ``JAXNN_TEST_FAST_COMPILE=0``: the tests' programs are small and run a few times, so
    the optimisations cost them more than they save. Measured on the 2-core machine:
    ten typical programs compile in 1.6 s of CPU instead of 5.9 s; eight of the slowest
    test files (test_backprop, test_rows, test_sklearn, test_verify_tools, ...), with an
    empty compilation cache, take 138 s of CPU instead of 254 s.

    XLA reads ``XLA_FLAGS`` once, at the first compile: it is set for that compile, then
    given back, so the processes the tests start compile as users' do. Both settings
    change some results in their last bits (a training's parameters after a few epochs):
    a test that compares bits with XLA's default compile runs both sides in processes
    of their own (tests/test_cli.py's resume after SIGINT, tests/test_program_cache.py's
    start), and ``JAXNN_TEST_FAST_COMPILE=0`` tells whether a failure comes from them.
    """
    if os.environ.get("JAXNN_TEST_FAST_COMPILE", "1") == "0":
        return
    jax.config.update("jax_disable_most_optimizations", True)
    if pinned_jaxlib():
        saved = os.environ.get("XLA_FLAGS")
        os.environ["XLA_FLAGS"] = f"{saved or ''} {FUSION_EMITTERS_OFF}".strip()
        try:
            jax.jit(lambda x: x + 1)(1.0)  # XLA reads its flags
        finally:
            if saved is None:
                del os.environ["XLA_FLAGS"]
            else:
                os.environ["XLA_FLAGS"] = saved


fast_compiles()


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


# Hypothesis: how many examples a property test draws where it does not say
# (tests/test_properties.py). Each example is a new program to trace and compile, so the
# inner loop draws few; CI (``torch_required``) draws the full set; ``thorough`` is for a
# search before a release. ``JAXNN_HYPOTHESIS_PROFILE=dev|ci|thorough`` picks one.
HYPOTHESIS_PROFILES = {"dev": 8, "ci": 20, "thorough": 200}


def hypothesis_profile() -> str:
    """The profile ``JAXNN_HYPOTHESIS_PROFILE`` names; else ``ci`` under CI, ``dev`` here."""
    name = os.environ.get("JAXNN_HYPOTHESIS_PROFILE") or ("ci" if torch_required() else "dev")
    if name not in HYPOTHESIS_PROFILES:
        raise pytest.UsageError(
            f"JAXNN_HYPOTHESIS_PROFILE={name!r}: expected one of {', '.join(HYPOTHESIS_PROFILES)}"
        )
    return name


for _name, _examples in HYPOTHESIS_PROFILES.items():
    hypothesis.settings.register_profile(_name, max_examples=_examples)
hypothesis.settings.load_profile(hypothesis_profile())
