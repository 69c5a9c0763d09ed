"""Any pytree, any data: what the gradient checks differentiate and what they hold fixed.

Parameters may be Equinox-style pytrees whose leaves include functions
(``jax.nn.relu`` is a ``custom_jvp`` object), strings, integers and other
objects. ``split`` keeps the float arrays, the leaves to differentiate, and
closes over everything else; ``hand_leaves`` reads a hand-written gradient at
the same paths, whether it repeats the parameter tree or puts ``None`` where a
leaf is not differentiated (as ``equinox.filter_grad`` does).
"""

from typing import NamedTuple

import jax
import numpy as np

from jaxnn.verify.measures import is_float_array

__all__ = [
    "Split",
    "drop_empty",
    "hand_leaves",
    "partition_args",
    "split",
]


class Split(NamedTuple):
    """The float-array leaves of a pytree, their paths, and how to rebuild the tree."""

    leaves: list  # the float arrays, in tree order
    paths: list  # their key paths, as ``jax.tree_util.keystr`` writes them
    fixed: list  # the paths of the leaves held fixed (functions, ints, ...)
    rebuild: object  # rebuild(leaves) -> the tree, the fixed leaves as they were
    key: object  # hashable: the tree's structure and fixed leaves (None if unhashable)


def split(tree) -> Split:
    """Separate the float arrays of ``tree`` (checked) from its other leaves (held fixed)."""
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
    all_leaves = [leaf for _, leaf in with_paths]
    where = [i for i, leaf in enumerate(all_leaves) if is_float_array(leaf)]
    paths = [jax.tree_util.keystr(with_paths[i][0]) for i in where]
    fixed = [jax.tree_util.keystr(p) for i, (p, _) in enumerate(with_paths) if i not in where]

    def rebuild(leaves):
        full = list(all_leaves)
        for i, leaf in zip(where, leaves, strict=True):
            full[i] = leaf
        return jax.tree.unflatten(treedef, full)

    key = _hashable((treedef, tuple(x for i, x in enumerate(all_leaves) if i not in where)))
    return Split([all_leaves[i] for i in where], paths, fixed, rebuild, key)


def _hashable(key):
    try:
        hash(key)
    except TypeError:
        return None
    return key


def hand_leaves(hand, parts: Split, what: str = "grad_fn's result") -> list:
    """The leaves of ``hand`` at the checked paths of ``parts``, shape-checked.

    Raises ValueError naming the path that is missing or has the wrong shape, or
    the paths ``hand`` has and the parameters do not (never silently ignored).
    """
    found = {
        jax.tree_util.keystr(p): leaf
        for p, leaf in jax.tree_util.tree_flatten_with_path(hand, is_leaf=lambda x: x is None)[0]
    }
    extra = sorted(
        p for p, leaf in found.items() if leaf is not None and p not in {*parts.paths, *parts.fixed}
    )
    if extra:
        raise ValueError(
            f"{what} has leaves the parameters do not have: {', '.join(extra)}; return "
            "the parameters' structure (one array per float leaf, None elsewhere)"
        )
    leaves = []
    for path, param in zip(parts.paths, parts.leaves, strict=True):
        leaf = found.get(path)
        if leaf is None:
            have = ", ".join(sorted(found)) or "no leaves"
            raise ValueError(
                f"{what} has no array at {path or '(root)'}, the path of a float parameter "
                f"(it has: {have}); return one array per parameter leaf, shaped like it"
            )
        if np.shape(leaf) != np.shape(param):
            raise ValueError(
                f"{what}{path} has shape {np.shape(leaf)}, the parameter has shape "
                f"{np.shape(param)}"
            )
        leaves.append(leaf)
    return leaves


def partition_args(args, kwargs):
    """Split ``(args, kwargs)`` into traced arrays and a static rest, for ``jax.jit``.

    Returns ``(arrays, build, key)``: ``build(arrays)`` gives back ``(args,
    kwargs)``. Arrays (any dtype) are traced; every other leaf (a ``Network``, a
    function, a Python number) is closed over, as ``equinox.filter_jit`` does;
    ``key`` is that static part, hashable (None if it is not), to reuse a
    compiled program.
    """
    leaves, treedef = jax.tree.flatten((tuple(args), dict(kwargs)))
    where = [i for i, x in enumerate(leaves) if isinstance(x, (jax.Array, np.ndarray))]

    def build(arrays):
        full = list(leaves)
        for i, x in zip(where, arrays, strict=True):
            full[i] = x
        return jax.tree.unflatten(treedef, full)

    static = tuple(x for i, x in enumerate(leaves) if i not in where)
    return [leaves[i] for i in where], build, _hashable((treedef, static))


def drop_empty(parts: Split) -> tuple:
    """``(parts without its empty leaves, their paths)``: an empty leaf has nothing to check."""
    keep = [i for i, x in enumerate(parts.leaves) if np.size(x)]
    if len(keep) == len(parts.leaves):
        return parts, []

    def rebuild(leaves):
        full = list(parts.leaves)
        for i, leaf in zip(keep, leaves, strict=True):
            full[i] = leaf
        return parts.rebuild(full)

    key = None if parts.key is None else (parts.key, tuple(keep))
    live = Split(
        [parts.leaves[i] for i in keep], [parts.paths[i] for i in keep], parts.fixed, rebuild, key
    )
    return live, [p for i, p in enumerate(parts.paths) if i not in keep]
