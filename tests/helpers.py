"""Shared test helpers."""

import functools
import itertools
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from jaxnn.verify.matrix_program import _CPU_COMPILER_OPTIONS

# The configurations the gradient tests cover: every hidden activation, and every
# (output activation, loss) pair of the core issue. Kept here, apart from jaxnn's own
# tables, so that a pair removed from the library cannot shrink the tests.
HIDDEN = (
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "linear",
    "softmax",
    "gelu",
    "gelu_tanh",
    "silu",
    "softplus",
)
PAIRS = (
    ("softmax", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
    ("linear", "mse"),
    ("sigmoid", "mse"),
    ("tanh", "mse"),
    ("softmax", "mse"),
)
# The configurations of the verify matrix, which CI gates on (``jaxnn verify --expect``
# in .ci/run): every element-wise hidden activation, every pair above, 1 to 3 hidden
# layers, fused and not; as (depth, hidden, output, loss, fused).
VERIFY_DEPTHS = (1, 2, 3)
VERIFY_HIDDEN = tuple(h for h in HIDDEN if h != "softmax")
VERIFY_CONFIGURATIONS = frozenset(
    (depth, hidden, output, loss, fused)
    for depth, hidden, (output, loss), fused in itertools.product(
        VERIFY_DEPTHS, VERIFY_HIDDEN, PAIRS, (True, False)
    )
)


def sample(cases, every: int, unpack: bool = False) -> list:
    """``cases`` as pytest parameters, every ``every``-th (from the first) for the inner
    loop and the rest marked ``slow``: ``pytest -m "not slow"`` runs a sample of the
    matrix, CI runs all of it.

    For matrices whose claim is the same check case by case (another activation, head or
    seed). Where a case list is a product, choose ``every`` coprime with its inner length,
    so that the sample still walks through every value of each factor (say so where it is
    used). ``unpack``: each case is a tuple of several arguments.
    """
    assert every >= 1, every

    def param(i, case):
        marks = () if i % every == 0 else pytest.mark.slow
        return pytest.param(*case, marks=marks) if unpack else pytest.param(case, marks=marks)

    return [param(i, case) for i, case in enumerate(cases)]


def max_relative_error(actual, expected, floor=1e-30):
    """max |a - e| / max(|e|, floor) over elements, as floats64."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    return float(np.max(np.abs(a - e) / np.maximum(np.abs(e), floor), initial=0.0))


def leaf_relative_error(actual, expected):
    """max |a - e| / max|e| over one leaf: relative to the leaf's scale, so that
    entries that are exactly zero in one and 1e-300 in the other do not blow up."""
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    scale = max(float(np.max(np.abs(e), initial=0.0)), 1e-300)
    return float(np.max(np.abs(a - e), initial=0.0)) / scale


def assert_trees_close(actual, expected, rtol, what=""):
    """Same tree structure, shapes and dtypes; every leaf within rtol of its scale."""
    s_a = jax.tree_util.tree_structure(actual)
    s_e = jax.tree_util.tree_structure(expected)
    assert s_a == s_e, f"{what}: tree structures differ: {s_a} vs {s_e}"
    paths = jax.tree_util.tree_leaves_with_path(expected)
    for (path, e), a in zip(paths, jax.tree_util.tree_leaves(actual), strict=True):
        name = f"{what}{jax.tree_util.keystr(path)}"
        assert np.shape(a) == np.shape(e), f"{name}: shape {np.shape(a)} vs {np.shape(e)}"
        assert a.dtype == e.dtype, f"{name}: dtype {a.dtype} vs {e.dtype}"
        assert np.all(np.isfinite(a)), f"{name}: non-finite values"
        err = leaf_relative_error(a, e)
        assert err <= rtol, f"{name}: relative error {err:.3e} > {rtol:.1e}"


@functools.cache
def _fast_compiler_options():
    """The verify matrix's CPU compiler options where this backend and XLA accept them."""
    if jax.default_backend() != "cpu":
        return None
    try:
        jax.jit(lambda x: x + 1, compiler_options=_CPU_COMPILER_OPTIONS)(0.0)
    except jax.errors.JaxRuntimeError:  # an XLA without one of these options
        return None
    return _CPU_COMPILER_OPTIONS


def fast_jit(fun, **kwargs):
    """``jax.jit`` compiled as ``jaxnn verify`` compiles on CPU: XLA's backend optimisations off.

    A test's small programs spend 5-10 times longer compiling at the default
    optimisation level than running; the options change how code is generated,
    not its floating-point semantics. Top level only: JAX refuses compiler
    options on a jit nested inside another transformation (``jax.grad`` of it).
    """
    return jax.jit(fun, compiler_options=_fast_compiler_options(), **kwargs)


def run_script(script: str, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -c script *argv`` in a fresh process on the CPU, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", script, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
