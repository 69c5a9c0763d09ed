"""Shared test helpers."""

import jax
import numpy as np


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
