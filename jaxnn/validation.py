"""Input checks shared by every module: each check is written once, here.

Every check runs on the host before any math and raises ``ValueError`` with a
message that names the argument, what it got and what is valid. This module
imports nothing from jaxnn: it sits below the math so that every other module
(network, training, tools, command line) can use it.
"""

import contextvars
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify
from numpy.typing import ArrayLike, DTypeLike

__all__ = [
    "as_columns",
    "as_real_array",
    "as_rows",
    "check_batch_size",
    "check_finite",
    "check_int",
    "check_key",
    "check_labels",
    "check_params",
    "checked",
    "is_labels",
    "one_hot",
    "shape_of",
]


def shape_of(x: Any) -> tuple:
    """``x``'s shape as a tuple of ints (a list or a scalar included)."""
    return tuple(np.shape(x))


def _is_int(x) -> bool:
    """A Python or NumPy integer, and not a bool."""
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def check_int(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int; a ValueError unless it is an integer >= ``minimum``."""
    if not _is_int(value) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _is_real(dtype) -> bool:
    """Float, integer or bool: a dtype the math can take (not complex, string, object)."""
    return any(jnp.issubdtype(dtype, kind) for kind in (jnp.floating, jnp.integer, jnp.bool_))


def as_real_array(x: Any, name: str) -> Any:
    """``x`` as an array of real numbers; lists become NumPy arrays, arrays stay as they are.

    A ragged list or a dtype other than float, int or bool is a ValueError.
    """
    if x is None:
        raise ValueError(f"{name} is None; expected an array of numbers")
    if not hasattr(x, "dtype"):
        try:
            x = np.asarray(x)
        except (ValueError, TypeError):  # ragged
            raise ValueError(f"{name} is not a rectangular array of numbers") from None
    if not _is_real(x.dtype):
        raise ValueError(
            f"{name} has dtype {np.dtype(x.dtype)}; expected real numbers (float, int or bool)"
        )
    return x


def _is_key(key) -> bool:
    """A new-style typed ``jax.random`` key, or a legacy uint32 key of shape (2,)."""
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        return True
    return shape_of(key) == (2,) and getattr(key, "dtype", None) == jnp.uint32


def check_key(key: Any, where: str) -> None:
    """Raise ValueError unless ``key`` is a ``jax.random`` key."""
    if not _is_key(key):
        raise ValueError(
            f"{where}: key must be a jax.random key (jax.random.key(seed) or "
            f"jax.random.PRNGKey(seed)), got {type(key).__name__} with shape {shape_of(key)}"
        )


def check_finite(x: ArrayLike, name: str, rows: str = "feature", note: str = "") -> None:
    """Raise ValueError if the ``(n, m)`` array ``x`` holds a NaN or an Inf.

    The message counts them and names the first, by example (column) and then
    by row: ``X_train has 3 non-finite values (NaN or Inf), first at feature 5,
    example 17``. Runs on the host, so not under ``jit``.
    """
    x = np.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.inexact):
        return  # ints and bools are finite
    bad = ~np.isfinite(x)
    count = int(np.count_nonzero(bad))
    if count:
        example = int(np.flatnonzero(bad.any(axis=0))[0])
        row = int(np.flatnonzero(bad[:, example])[0])
        raise ValueError(
            f"{name} has {count} non-finite values (NaN or Inf){note}, first at {rows} {row}, "
            f"example {example}"
        )


def as_columns(X: Any, n: int, name: str, symbol: str, twin: str | None = None) -> Any:
    """X as a 2-D ``(n, m)`` array of real numbers; a vector of length n is one example, (n, 1).

    Lists become NumPy arrays; other dtypes than float, int and bool (object,
    string, complex) are a ValueError, as is any other shape, with a hint when
    the array looks transposed. ``twin``, the dotted name of the caller's
    row-layout counterpart (such as ``"jaxnn.rows.cost"``), joins that hint.
    """
    return _as_examples(X, n, name, symbol, rows=False, twin=twin)


def as_rows(X: Any, n: int, name: str, symbol: str, twin: str | None = None) -> Any:
    """X as a 2-D ``(m, n)`` array of real numbers, one example per row (``jaxnn.rows``);
    a vector of length n is one example, (1, n). Otherwise as ``as_columns`` (``twin``:
    the caller's column-layout counterpart)."""
    return _as_examples(X, n, name, symbol, rows=True, twin=twin)


def _as_examples(X, n: int, name: str, symbol: str, rows: bool, twin: str | None = None):
    """``as_columns`` (examples on axis 1) or ``as_rows`` (examples on axis 0)."""
    shape_m = f"m x {symbol}" if rows else f"{symbol} x m"
    if X is None:
        raise ValueError(f"{name} is None; expected an array ({shape_m})")
    where = f"(m, {n})" if rows else f"({n}, m)"
    each = "one example per row" if rows else "one example per column"
    expect = f"{where} ({shape_m}, {each})"
    X = as_real_array(X, name)
    shape = shape_of(X)
    units = 1 if rows else 0  # the axis that must have n entries
    if len(shape) == 1 and shape[0] == n:
        return jnp.reshape(X, (1, n) if rows else (n, 1))
    if len(shape) != 2 or shape[units] != n:
        hint = ""
        if len(shape) == 2 and shape[1 - units] == n:
            hint = (
                "; examples go in rows here (jaxnn.rows), so transpose it"
                if rows
                else "; examples go in columns, so transpose it"
            )
            if twin is not None:
                hint += f", or call {twin}, which takes " + ("columns" if rows else "rows")
        raise ValueError(f"{name} has shape {shape}, the network expects {expect}{hint}")
    return X


def is_labels(Y: Any, ndim: int = 1) -> bool:
    """Integer class labels: an array of integers with ``ndim`` axes, 1 for one label per
    example, 0 for one example's label."""
    dtype = getattr(Y, "dtype", None)
    return dtype is not None and len(shape_of(Y)) == ndim and jnp.issubdtype(dtype, jnp.integer)


def check_labels(labels: ArrayLike, n_classes: int, name: str = "labels") -> np.ndarray:
    """Concrete class labels as a NumPy vector ``(m,)`` of integers from 0 to ``n_classes - 1``.

    The rule for class labels, written once: a vector of m integers (floats with
    integer values, such as 3.0, count as those integers), each in
    ``[0, n_classes)``. Anything else is a ValueError that starts with ``name`` and
    names the first offending label and its example: ``labels must be from 0 to 2
    (3 classes), and 1 is not: the first is label 3 (example 1)``. ``one_hot``
    applies it; the MNIST loader checks its label files with it.
    """
    n_classes = check_int(n_classes, "n_classes")
    try:
        values = np.asarray(labels)
    except ValueError:  # ragged
        raise ValueError(f"{name} must be a vector of integers") from None
    if values.ndim != 1:
        raise ValueError(f"{name} must be a vector (m,) of integers, got shape {values.shape}")
    if values.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be integers, got dtype {values.dtype}")
    if values.dtype.kind == "f":
        integral = np.isfinite(values) & (values == np.round(values))
        if not integral.all():
            k = int(np.flatnonzero(~integral)[0])
            raise ValueError(f"{name} must be integers, and label {values[k]} (example {k}) is not")
    bad = (values < 0) | (values >= n_classes)
    if bad.any():
        k, count = int(np.flatnonzero(bad)[0]), int(bad.sum())
        raise ValueError(
            f"{name} must be from 0 to {n_classes - 1} ({n_classes} classes), and {count} "
            f"{'is' if count == 1 else 'are'} not: the first is label {values[k]} (example {k})"
        )
    return values.astype(np.int64)


def one_hot(
    labels: ArrayLike | jax.Array,
    n_classes: int,
    dtype: DTypeLike = np.float64,
    *,
    axis: int = 0,
    name: str = "labels",
) -> np.ndarray | jax.Array:
    """Integer class labels of shape ``(m,)`` as one-hot targets, classes on ``axis``.

    ``axis=0`` gives ``(n_classes, m)`` (examples in columns, the seeds' layout),
    ``axis=1`` gives ``(m, n_classes)`` (``jaxnn.rows``). Concrete labels are
    checked by ``check_labels`` (a ValueError naming the first one out of range);
    NumPy labels and lists give a NumPy array, JAX arrays a JAX array. Traced
    labels (under ``jax.jit``) cannot be inspected, so a label that is out of range
    or not an integer gets a target of NaNs instead, and the cost and gradients come
    out NaN rather than silently wrong.

    Example:
      >>> one_hot([2, 0], 3)  # (n_classes, m)
      array([[0., 1.],
             [0., 0.],
             [1., 0.]])
    """
    if isinstance(labels, jax.core.Tracer):
        n_classes = check_int(n_classes, "n_classes")
        hot = jax.nn.one_hot(labels, n_classes, dtype=dtype, axis=axis)
        valid = (labels >= 0) & (labels < n_classes) & (labels == jnp.round(labels))
        if _CHECKING.get():  # inside jaxnn.checked: name the label instead of NaN
            bad = ~valid
            checkify.check(
                ~jnp.any(bad),
                f"{name} must be from 0 to {n_classes - 1} ({n_classes} classes); the first "
                "that is not is label {label} (example {example}), {count} in all",
                count=jnp.sum(bad),
                label=labels[jnp.argmax(bad)],
                example=jnp.argmax(bad),
            )
        return jnp.where(jnp.expand_dims(valid, axis), hot, jnp.nan)
    values = check_labels(labels, n_classes, name)
    if isinstance(labels, jax.Array):  # keep it where it is
        return jax.nn.one_hot(labels, n_classes, dtype=dtype, axis=axis)
    hot = np.arange(n_classes)[:, None] == values[None, :]  # (n_classes, m)
    return (hot if axis == 0 else hot.T).astype(dtype)


def check_params(params: Any, sizes: tuple) -> None:
    """Raise ValueError unless params has one {"W", "b"} per layer with the shapes of ``sizes``.

    Layer l (from 1) needs ``W`` of shape ``(n^[l], n^[l-1])`` and ``b`` of shape
    ``(n^[l], 1)`` or ``(n^[l],)`` (as Flax and Equinox hold biases), both
    floating-point arrays. Gradients come back in each bias's own shape.
    """
    if not isinstance(params, (list, tuple)):
        raise ValueError(
            f"params must be a list with one dict per layer, got {type(params).__name__}"
        )
    if len(params) != len(sizes) - 1:
        raise ValueError(f"params has {len(params)} layers, the network has {len(sizes) - 1}")
    for l, layer in enumerate(params, start=1):
        if not isinstance(layer, dict) or set(layer) != {"W", "b"}:
            got = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
            raise ValueError(f"layer {l}: expected a dict with keys 'W' and 'b', got {got}")
        n_out, n_in = sizes[l], sizes[l - 1]
        for name, wants, what in (
            ("W", [(n_out, n_in)], f"n^[{l}] x n^[{l - 1}]"),
            ("b", [(n_out, 1), (n_out,)], f"n^[{l}] x 1, or n^[{l}] as Flax and Equinox hold it"),
        ):
            got = shape_of(layer[name])
            if got not in wants:
                expects = " or ".join(str(w) for w in wants)
                hint = ""
                if name == "W" and got == (n_in, n_out):
                    hint = (
                        "; W is (out, in), so transpose it (Flax's kernel is (in, out): "
                        "jaxnn.from_flax converts Flax parameters)"
                    )
                raise ValueError(
                    f"layer {l}: {name} has shape {got}, the network expects {expects} "
                    f"({what}){hint}"
                )
            dtype = getattr(layer[name], "dtype", None)
            if dtype is None:  # a list: jnp would fail inside the matmul
                raise ValueError(
                    f"layer {l}: {name} is a {type(layer[name]).__name__}; parameters must be "
                    "arrays (numpy or jax)"
                )
            if not jnp.issubdtype(dtype, jnp.floating):  # gradients would be truncated
                raise ValueError(
                    f"layer {l}: {name} has dtype {np.dtype(dtype)}; parameters must be "
                    "floating point (e.g. float32)"
                )


def check_batch_size(batch_size: Any, m: int) -> None:
    """Raise ValueError unless 1 <= batch_size <= m, the number of training examples."""
    check_int(batch_size, "batch size")
    if batch_size > m:
        raise ValueError(
            f"batch size {batch_size} is larger than the training set ({m} examples); "
            f"use at most {m}"
        )


# True while a function wrapped by ``checked`` is being traced: the traced checks
# (``one_hot``'s labels) then add ``checkify.check``s. A context variable, set and
# reset around the trace, so nothing outside that call sees it.
_CHECKING = contextvars.ContextVar("jaxnn_checking", default=False)


def checked(fn: Callable[..., Any]) -> Callable[..., tuple[checkify.Error, Any]]:
    """``fn`` with jaxnn's checks of traced values on: ``(error, result)``, by ``checkify``.

    Under ``jax.jit`` values cannot be inspected on the host, so an integer class
    label out of range gives a NaN cost, not an error. Wrapped by ``checked``, any
    jaxnn function (or a function calling them) returns a ``checkify.Error`` as well,
    which names the first bad label and its example; ``error.throw()`` raises it as
    a ``checkify.JaxRuntimeError``, ``error.get()`` gives the message or None. The
    checks cost a reduction over the labels; without ``checked`` there are none.

    Example:
      >>> error, cost = jax.jit(jaxnn.checked(jaxnn.cost))(params, X, labels, net)
      >>> error.throw()  # Y (class labels) must be from 0 to 9 (10 classes); the first ...
    """

    @functools.wraps(fn)
    def with_checks(*args: Any, **kwargs: Any) -> Any:
        token = _CHECKING.set(True)
        try:
            return fn(*args, **kwargs)
        finally:
            _CHECKING.reset(token)

    return checkify.checkify(with_checks, errors=checkify.user_checks)
