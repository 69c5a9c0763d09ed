"""The network: its specification, parameters, forward pass and cost.

Notation follows the seeds. Layer l = 1..L of the math has ``W^[l]`` of shape
``(n^[l], n^[l-1])`` and ``b^[l]`` of shape ``(n^[l], 1)``; ``X = A^[0]`` is
``(n_x, m)``, one example per column; ``Y`` is ``(n_L, m)``.

Indexing: Python is 0-based, the math 1-based. ``params[l]`` holds layer
``l + 1`` of the math, ``cache.Z[l]`` is ``Z^[l+1]``, while ``cache.A[l]`` is
``A^[l]`` (``A[0]`` is X), so ``Z[l] = W[l] @ A[l] + b[l]``.

Mixed precision (``Network(..., preferred_element_type="float32")``, for params and
data in bfloat16 or float16): every product returns, so accumulates in, that type, as
``jnp.matmul(..., preferred_element_type=...)`` does, and Z, A, delta and the sums
computed from them are in it; gradients come back in the params' dtype. (MP) in
docs/derivations.md, "Mixed precision".
"""

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any, NamedTuple, TypeAlias

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from jaxnn import activations, losses
from jaxnn.validation import (
    as_columns,
    as_real_array,
    as_rows,
    check_int,
    check_key,
    check_params,
    is_labels,
    one_hot,
    shape_of,
)

__all__ = [
    "INIT_METHODS",
    "LAYOUTS",
    "Cache",
    "Layer",
    "Network",
    "Params",
    "bias_like",
    "check_inputs",
    "column_bias",
    "cost",
    "forward",
    "forward_unchecked",
    "init_params",
    "output_cost",
    "param_types",
    "predict",
]

Layer: TypeAlias = dict[str, jax.Array]  # {"W": (n^[l], n^[l-1]), "b": (n^[l], 1)}
# One ``Layer`` per layer, params[l] holding layer l + 1 of the math. A list (what
# ``init_params`` returns) or a tuple; gradients come back in the same container.
Params: TypeAlias = Sequence[Layer]


@jax.tree_util.register_static
@dataclasses.dataclass(frozen=True)
class Network:
    """A dense network: layer sizes, one activation per layer, and a loss.

    Frozen and hashable, and a pytree with no leaves (``register_static``): an
    argument of a ``jax.jit`` function as it is, with no ``static_argnames``;
    an equal Network hits the same compiled function (no retracing).

    Args:
      sizes: ``(n0, n1, ..., nL)``; n0 is the number of inputs n_x.
      activations: one name per layer (``len(sizes) - 1`` of them), from
        ``jaxnn.activations.ACTIVATIONS``.
      loss: ``"mse"``, ``"binary_cross_entropy"`` or ``"cross_entropy"``; or None
        (the default) for a network with no cost of its own, a block of a larger model
        (``jaxnn.network_with_hand_gradients``, ``forward``, ``predict``), whose
        ``cost`` and ``backprop`` raise a ValueError that says so.
      preferred_element_type: None (the default: every operation in the type JAX's
        promotion gives), or a floating dtype, kept as its name (``"float32"``; a dtype
        is taken too): mixed precision, JAX's name for a product's accumulation and
        result type (``jnp.matmul(..., preferred_element_type=...)``). The params and
        X keep their dtype (bfloat16 or float16; none may be wider); every product of
        the forward pass returns this type (MP), so Z, A, delta, every product of
        BP1-BP4 (each has delta as an operand), the element-wise math and the sums
        (the cost, BP3) are in it; the gradients come back in the params' dtype, as
        ``jax.grad`` gives them.

    Example:
      >>> net = Network((64, 32, 10), ("relu", "softmax"), "cross_entropy")
      >>> block = Network((64, 32, 10), ("relu", "linear"))  # no loss: a block
      >>> mixed = Network((64, 32, 10), ("relu", "softmax"), "cross_entropy",
      ...                 preferred_element_type="float32")  # bfloat16 params, float32 sums
    """

    sizes: tuple[int, ...]
    activations: tuple[str, ...]
    loss: str | None = None
    preferred_element_type: str | None = None

    def __post_init__(self):
        sizes, acts = self.sizes, self.activations
        if isinstance(acts, str):
            raise ValueError(
                f"activations must be a sequence of names, one per layer, got the string {acts!r}"
            )
        try:
            sizes, acts = tuple(sizes), tuple(acts)
        except TypeError:
            raise ValueError("sizes and activations must be sequences") from None
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least two entries (inputs and outputs), got {sizes}")
        for i, n in enumerate(sizes):
            check_int(n, f"sizes[{i}]")
        if len(acts) != len(sizes) - 1:
            raise ValueError(
                f"got {len(acts)} activations for {len(sizes) - 1} layers "
                f"(sizes {sizes}): give one activation per layer"
            )
        for l, name in enumerate(acts, start=1):
            try:
                activations.get(name)
            except ValueError as e:
                raise ValueError(f"layer {l}: {e}") from None
        loss = losses.get(self.loss) if self.loss is not None else None
        if loss is not None and loss.outputs is not None and acts[-1] not in loss.outputs:
            raise ValueError(
                f"loss {self.loss!r} needs an output activation in {loss.outputs}, "
                f"got {acts[-1]!r} for layer {len(acts)}"
            )
        for l, name in enumerate(acts, start=1):
            if name == "softmax" and sizes[l] < 2:
                raise ValueError(
                    f"layer {l}: softmax needs at least 2 units (n^[{l}] >= 2); with one "
                    "unit its output is the constant 1 and its gradient 0"
                )
        object.__setattr__(self, "sizes", tuple(int(n) for n in sizes))
        object.__setattr__(self, "activations", acts)
        if self.preferred_element_type is not None:
            object.__setattr__(self, "preferred_element_type", _dtype_name(self))

    @property
    def L(self) -> int:
        """Number of layers with parameters."""
        return len(self.sizes) - 1


def _dtype_name(net: Network) -> str:
    """The name of ``net.preferred_element_type``, a floating dtype; a ValueError otherwise."""
    given = net.preferred_element_type
    try:
        dtype = jnp.dtype(given)
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(
            "preferred_element_type must be None or a floating dtype, the type every "
            "product and sum accumulates in (mixed precision: 'float32' for bfloat16 or "
            f"float16 params), got {given!r}"
        )
    return dtype.name


class Cache(NamedTuple):
    """The forward pass: Z = [Z^[1], ..., Z^[L]], A = [A^[0], ..., A^[L]]."""

    Z: list[jax.Array]
    A: list[jax.Array]


INIT_METHODS = ("auto", "he", "glorot", "lecun", "normal", "pytorch")


def init_params(
    key: jax.Array, net: Network, *, method: str = "auto", dtype: jnp.dtype | None = None
) -> list[Layer]:
    """Random weights and zero biases, one ``{"W", "b"}`` dict per layer.

    Methods (n_in = n^[l-1], n_out = n^[l]):
      * ``"auto"``: ``"he"`` for relu, leaky_relu, gelu, gelu_tanh and silu layers
        (zero for z << 0, z for z >> 0: with glorot a 20-layer gelu or silu stack of
        width 256 shrinks rms(Z) to 3e-6, with he to 0.1 and 0.006), ``"glorot"``
        otherwise (softplus included: its mean log 2 > 0 makes he grow rms(Z) to 3.6
        over 20 layers, glorot keeps it at 1.0);
      * ``"he"``: W ~ N(0, 2 / n_in) (He et al., 2015);
      * ``"glorot"``: W ~ U(-r, r), r = sqrt(6 / (n_in + n_out)) (Glorot & Bengio, 2010);
      * ``"lecun"``: W ~ truncated N with variance 1 / n_in, as
        ``jax.nn.initializers.lecun_normal`` (Flax's Dense default);
      * ``"normal"``: W ~ N(0, 1 / n_in), the seeds' era (Nielsen's network2);
      * ``"pytorch"``: W, b ~ U(-1/sqrt(n_in), 1/sqrt(n_in)), ``torch.nn.Linear``'s
        default; the only method with non-zero biases.

    Args:
      key: a ``jax.random`` key.
      net: the network.
      method: one of ``INIT_METHODS``.
      dtype: the parameters' dtype; JAX's default float type if None.
    """
    types = param_types(net, dtype, "init_params")
    if method not in INIT_METHODS:
        raise ValueError(f"unknown init method {method!r}; valid methods: {INIT_METHODS}")
    check_key(key, "init_params")
    params = []
    keys = jax.random.split(key, net.L)
    for l in range(net.L):
        n_in, n_out = net.sizes[l], net.sizes[l + 1]
        kind = method
        if kind == "auto":
            he = ("relu", "leaky_relu", "gelu", "gelu_tanh", "silu")
            kind = "he" if net.activations[l] in he else "glorot"
        kw, kb = jax.random.split(keys[l])
        shape, dtype = types[l]["W"].shape, types[l]["W"].dtype
        b = jnp.zeros(types[l]["b"].shape, dtype)
        if kind == "he":
            W = jax.random.normal(kw, shape, dtype) * math.sqrt(2.0 / n_in)
        elif kind == "glorot":
            r = math.sqrt(6.0 / (n_in + n_out))
            W = jax.random.uniform(kw, shape, dtype, -r, r)
        elif kind == "lecun":
            init = jax.nn.initializers.lecun_normal(in_axis=-1, out_axis=-2)
            W = init(kw, shape, dtype)
        elif kind == "normal":
            W = jax.random.normal(kw, shape, dtype) / math.sqrt(n_in)
        else:  # pytorch
            r = 1.0 / math.sqrt(n_in)
            W = jax.random.uniform(kw, shape, dtype, -r, r)
            b = jax.random.uniform(kb, (n_out, 1), dtype, -r, r)
        params.append({"W": W, "b": b})
    return params


def param_types(
    net: Network, dtype: jnp.dtype | None = None, caller: str = "param_types"
) -> list[dict[str, jax.ShapeDtypeStruct]]:
    """The type of each layer's ``W`` (n^[l] x n^[l-1]) and ``b`` (n^[l] x 1), as
    ``init_params`` makes them, without making them (nothing computed: only the
    dtype is traced, about 1 ms).

    Args:
      net: the network.
      dtype: a floating dtype; JAX's default float type (float32, or float64 with
        ``jax_enable_x64``) if None.
      caller: the function named in the error for a dtype that is not floating.
    """
    _check_network(net)
    # The dtype an array of it gets (nothing computed): JAX's default float for None,
    # and for float64 without x64 what jax_explicit_x64_dtypes says (float32 and a
    # warning by default, an error, or float64).
    dtype = jax.eval_shape(functools.partial(jnp.zeros, (), dtype)).dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"{caller}: dtype must be a floating type, got {dtype}")
    return [
        {
            "W": jax.ShapeDtypeStruct((n_out, n_in), dtype),
            "b": jax.ShapeDtypeStruct((n_out, 1), dtype),
        }
        for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:], strict=True)
    ]


_NO_TARGETS = object()


def _check_network(net: object) -> None:
    """Raise ValueError unless ``net`` is a ``Network``."""
    if not isinstance(net, Network):
        raise ValueError(
            f"net must be a jaxnn.Network, got {type(net).__name__} {net!r:.60}; "
            "build one with jaxnn.Network(sizes, activations, loss)"
        )


LAYOUTS = ("columns", "rows")


def check_inputs(
    params: Any,
    X: ArrayLike,
    net: Network,
    Y: Any = _NO_TARGETS,
    *,
    layout: str = "columns",
    twin: str | None = None,
) -> tuple[Any, Any]:
    """Validate params, X and Y before any math; return X and Y as 2-D arrays.

    ``layout="columns"`` (the seeds'): X is ``(n_x, m)`` and Y ``(n_L, m)``;
    ``"rows"`` (``jaxnn.rows``): ``(m, n_x)`` and ``(m, n_L)``. A vector X is one
    example, with a vector Y ``(n_L,)``, or a scalar: an integer class label for
    softmax with cross-entropy, the target itself when n_L = 1 (so ``jax.vmap``
    over examples works, as in Equinox). For softmax with cross-entropy, Y may be
    integer class labels of shape ``(m,)``, returned one-hot in the params' dtype
    (``jaxnn.validation.one_hot``). Without Y (the forward pass) the second value
    is None; a Y given as None is an error, as is a Y with no examples (the cost
    is a mean over m >= 1), and any Y for a network without a loss. Under mixed
    precision Y comes back in ``net.preferred_element_type``, the cost's type. ``twin``
    names the caller's counterpart in the other layout, for the error hints.
    """
    _check_network(net)
    check_params(params, net.sizes)
    if net.preferred_element_type is not None:
        _check_mixed_precision(params, net)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; valid layouts: {LAYOUTS}")
    rows = layout == "rows"
    as_2d = functools.partial(as_rows if rows else as_columns, twin=twin)
    examples = 0 if rows else 1  # the axis of examples
    X2 = as_2d(X, net.sizes[0], "X", "n_x")
    if Y is _NO_TARGETS:
        return X2, None
    if net.loss is None:
        raise ValueError(
            f"this network has no loss (loss=None, sizes {net.sizes}), so it has no cost: "
            "it is a block (jaxnn.network_with_hand_gradients, predict, forward); give "
            f"jaxnn.Network a loss, one of {tuple(losses.LOSSES)}, to take a cost or its gradients"
        )
    one_example = np.ndim(X) == 1
    labels = (net.activations[-1], net.loss) == ("softmax", "cross_entropy")
    if one_example and Y is not None and np.ndim(Y) == 0:
        Y = as_real_array(Y, "Y")
        if labels and is_labels(Y, ndim=0):
            Y = jnp.reshape(Y, (1,))  # one example's label; one-hot below
        elif net.sizes[-1] == 1 and not labels:
            Y = jnp.reshape(Y, (1,))  # the one output's target
        else:
            raise ValueError(
                f"Y has shape () and dtype {np.dtype(Y.dtype)}: one example's target is a "
                f"vector ({net.sizes[-1]},) (n_L), or a scalar: an integer class label for "
                "softmax with cross_entropy, or the target itself when n_L = 1; this "
                f"network has {net.activations[-1]} with {net.loss} and n_L = {net.sizes[-1]}"
            )
        if labels:
            dtype = params[-1]["W"].dtype
            Y2 = one_hot(Y, net.sizes[-1], dtype, axis=examples ^ 1, name="Y (class label)")
            return X2, _targets_in_preferred_type(Y2, net)
        return X2, _targets_in_preferred_type(as_2d(Y, net.sizes[-1], "Y", "n_L"), net)
    if is_labels(Y) and not one_example:
        if not labels:
            raise ValueError(
                f"Y has shape {shape_of(Y)} and an integer dtype: class labels, which need a "
                f"softmax output with cross_entropy; this network has "
                f"{net.activations[-1]} with {net.loss}, so give Y as "
                + ("(m, n_L)" if rows else "(n_L, m)")
            )
        if shape_of(Y)[0] != shape_of(X2)[examples]:
            raise ValueError(
                f"X has shape {shape_of(X)} and the labels Y have shape {shape_of(Y)}: "
                "give one label per example"
            )
        dtype = params[-1]["W"].dtype
        Y2 = one_hot(Y, net.sizes[-1], dtype, axis=examples ^ 1, name="Y (class labels)")
    else:
        Y2 = as_2d(Y, net.sizes[-1], "Y", "n_L")
        if np.ndim(X) != np.ndim(Y):
            raise ValueError(
                f"X has shape {shape_of(X)} and Y has shape {shape_of(Y)}: give both as "
                "vectors (one example) or both as 2-D arrays"
            )
    if shape_of(X2)[examples] != shape_of(Y2)[examples]:
        what = "rows" if rows else "columns"
        raise ValueError(
            f"X has shape {shape_of(X)} and Y has shape {shape_of(Y)}: they need the same "
            f"number of examples m ({what})"
        )
    if shape_of(X2)[examples] == 0:
        raise ValueError(
            f"X has shape {shape_of(X)}: no examples; the cost is a mean over m >= 1 examples"
        )
    return X2, _targets_in_preferred_type(Y2, net)


def _targets_in_preferred_type(Y: Any, net: Network) -> Any:
    """Y in ``net.preferred_element_type`` under mixed precision (the cost is computed in
    it: ``1 - y`` of (C2) in float16 would be rounded), as it is otherwise."""
    return Y if net.preferred_element_type is None else Y.astype(net.preferred_element_type)


def _check_mixed_precision(params: Params, net: Network) -> None:
    """Raise ValueError where a parameter is wider than ``net.preferred_element_type``,
    the type its products accumulate in (its products would be rounded down)."""
    p = jnp.dtype(net.preferred_element_type)
    for l, layer in enumerate(params, start=1):
        for name in ("W", "b"):
            dtype = jnp.dtype(layer[name].dtype)
            if dtype.itemsize > p.itemsize:
                raise ValueError(
                    f"layer {l}: {name} has dtype {dtype.name}, wider than the network's "
                    f"preferred_element_type {p.name}, the type its products and sums "
                    f"accumulate in: give the params in {p.name} or narrower (bfloat16, "
                    "float16), or a wider preferred_element_type"
                )


def column_bias(b: jax.Array) -> jax.Array:
    """b^[l] as the ``(n^[l], 1)`` column (F-Z) adds to every example: a bias held as
    ``(n^[l],)`` (Flax's and Equinox's shape) gains its axis, ``(n^[l], 1)`` is as it is."""
    return b if b.ndim == 2 else b[:, None]


def bias_like(db: jax.Array, b: jax.Array) -> jax.Array:
    """A bias gradient ``(n^[l], 1)`` or ``(n^[l],)`` in the shape and dtype of the bias
    ``b`` it is for, as ``jax.grad`` returns it."""
    return jnp.reshape(db, b.shape).astype(b.dtype)


def forward_unchecked(params: Params, X: jax.Array, net: Network) -> Cache:
    """``forward`` without its input checks, for code that has checked them (or is traced).

    X must already be ``(n_x, m)``; (F-Z) and (F-A) layer by layer. Under mixed
    precision each product returns ``net.preferred_element_type`` (MP), which Z and A
    then have.
    """
    Zs, As = [], [X]
    for l, (layer, act_name) in enumerate(zip(params, net.activations, strict=True)):
        WA = jnp.matmul(layer["W"], As[l], preferred_element_type=net.preferred_element_type)
        Z = WA + column_bias(layer["b"])  # (F-Z), (MP): W A accumulated in the preferred type
        Zs.append(Z)
        As.append(activations.get(act_name).fn(Z))  # (F-A)
    return Cache(Zs, As)


def forward(params: Params, X: ArrayLike, net: Network) -> Cache:
    """The forward pass, Z^[l] = W^[l] A^[l-1] + b^[l] and A^[l] = sigma^[l](Z^[l]).

    Equations (F-Z) and (F-A). Returns a ``Cache`` of the Z^[1..L] and the
    A^[0..L], with A^[0] = X. A vector X of length n_x is taken as one example.
    """
    X, _ = check_inputs(params, X, net, twin="jaxnn.rows.forward")
    return forward_unchecked(params, X, net)


def predict(params: Params, X: ArrayLike, net: Network) -> jax.Array:
    """A^[L], the network's output; a vector X gives a vector."""
    X2, _ = check_inputs(params, X, net, twin="jaxnn.rows.predict")
    A = forward_unchecked(params, X2, net).A[-1]
    return A[:, 0] if np.ndim(X) == 1 else A


def output_cost(cache: Cache, Y: jax.Array, net: Network) -> jax.Array:
    """Mean over the m columns of the per-example cost, in its stable form (C1-C3), (C-M)."""
    loss = losses.get(net.loss)
    per_example = loss.stable_value(cache.Z[-1], cache.A[-1], Y)
    return jnp.mean(per_example)  # (C-M)


def cost(params: Params, X: ArrayLike, Y: ArrayLike, net: Network) -> jax.Array:
    """The network's cost: the mean over the m examples of the per-example cost.

    C = (1/m) sum_x C_x   (C-M), with C_x one of (C1) MSE, (C2) binary
    cross-entropy, (C3) cross-entropy. Computed from Z^[L] through log-sigmoid
    or log-softmax, so it stays finite and exact for |Z| in the thousands.
    For softmax with cross-entropy, Y may be integer class labels of shape (m,).
    One example: X a vector ``(n_x,)`` with Y ``(n_L,)`` or a scalar (a class
    label, or the target when n_L = 1), so ``jax.vmap`` over examples works.
    """
    X, Y = check_inputs(params, X, net, Y, twin="jaxnn.rows.cost")
    return output_cost(forward_unchecked(params, X, net), Y, net)
