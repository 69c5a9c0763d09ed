"""Parameters from and to Flax and Equinox: the same weights, laid out as each library holds them.

jaxnn's layer is ``{"W": (n_out, n_in), "b": (n_out, 1) or (n_out,)}`` and
computes ``W a + b`` (F-Z); the same layer is

  * Flax's ``Dense`` (Linen ``nn.Dense``, NNX ``nnx.Linear``): ``kernel`` ``(in, out)``,
    ``bias`` ``(out,)``, computing ``x @ kernel + bias``: W = kernel^T;
  * Equinox's ``eqx.nn.Linear`` (and each layer of ``eqx.nn.MLP``): ``weight``
    ``(out, in)``, ``bias`` ``(out,)``, computing ``weight @ x + bias``: W = weight.

So ``from_flax`` transposes each kernel, ``from_equinox`` takes the weights as
they are, and both keep the bias ``(out,)``: every jaxnn function takes a bias of
that shape and returns its gradient in it, so ``to_flax(grads, like=variables)``
and ``to_equinox(grads, model)`` give hand gradients in the other library's own
tree (optax then updates that library's parameters directly). A layer without a
bias (``use_bias=False``) gets a zero ``b``. Activations are not parameters:
``jaxnn.Network`` names them (``eqx.nn.MLP(activation=jax.nn.tanh)`` is
``"tanh"``, its default final identity ``"linear"``).

Equinox and Flax are optional: this module imports neither until a function
needs it (``to_equinox`` does; the others read arrays by name).

Example:
  >>> params = jaxnn.from_equinox(mlp)   # eqx.nn.MLP(8, 3, 32, 2, activation=jax.nn.tanh, ...)
  >>> net = jaxnn.Network((8, 32, 32, 3), ("tanh", "tanh", "linear"), "mse")
  >>> grads = jaxnn.rows.backprop(params, X, Y, net)   # BP1-BP4
  >>> model_grads = jaxnn.to_equinox(grads, mlp)       # as eqx.filter_grad gives them
"""

import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxnn.network import Layer, Params
from jaxnn.validation import as_real_array, shape_of

__all__ = ["from_equinox", "from_flax", "to_equinox", "to_flax"]

_FLAX_FORMS = (
    "a Linen variables dict {'params': {'Dense_0': {'kernel', 'bias'}, ...}}, its "
    "'params' dict, a list of {'kernel', 'bias'} dicts, or flax.nnx.Linear layers"
)


def _value(v: Any) -> Any:
    """An array from a plain array or a Flax NNX variable (``nnx.Param``)."""
    if v is None or isinstance(v, (jax.Array, np.ndarray)):
        return v
    try:
        return v[...]  # nnx.Variable
    except (TypeError, IndexError, KeyError):
        return v


def _numbered(names: Sequence[str]) -> list[str]:
    """``names`` in layer order: by number where all are ``<prefix>_<k>`` with one prefix
    (``Dense_10`` after ``Dense_9``, as Linen names them), as given otherwise."""
    found = [re.fullmatch(r"(.*)_(\d+)", name) for name in names]
    if all(found) and len({f.group(1) for f in found}) == 1:
        return sorted(names, key=lambda name: int(name.rpartition("_")[2]))
    return list(names)


def _flax_layers(params: Any) -> tuple[list[Any], list[str] | None, bool]:
    """``(layers, names, wrapped)``: the Dense layers of a Flax tree in order, their names
    (None for a sequence) and whether the tree had a ``{"params": ...}`` wrapper."""
    if isinstance(params, Mapping) and set(params) == {"params"}:
        layers, names, _ = _flax_layers(params["params"])
        return layers, names, True
    if isinstance(params, Mapping):
        if "kernel" in params:
            return [params], None, False
        names = _numbered(list(params))
        for name in names:
            layer = params[name]
            if not (isinstance(layer, Mapping) and "kernel" in layer):
                got = sorted(layer) if isinstance(layer, Mapping) else type(layer).__name__
                raise ValueError(
                    f"Flax params[{name!r}] is not a Dense layer (got {got}); from_flax "
                    "takes Dense layers, {'kernel': (in, out), 'bias': (out,)}, as " + _FLAX_FORMS
                )
        return [params[name] for name in names], names, False
    if hasattr(params, "kernel"):  # one nnx.Linear
        return [params], None, False
    if isinstance(params, Sequence) and not isinstance(params, str) and params:
        return list(params), None, False
    raise ValueError(f"from_flax got {type(params).__name__}; it takes {_FLAX_FORMS}")


def _field(layer: Any, name: str) -> Any:
    """``layer[name]`` of a dict or ``layer.name`` of a module; None if absent."""
    if isinstance(layer, Mapping):
        return _value(layer.get(name))
    return _value(getattr(layer, name, None))


def _layer(W: Any, b: Any, l: int, source: str, n_in: int | None) -> Layer:
    """One jaxnn layer from a weight ``W`` (out, in) and a bias ``(out,)`` or None, checked."""
    W = as_real_array(W, f"{source} layer {l}'s weight")
    if len(shape_of(W)) != 2:
        raise ValueError(f"{source} layer {l}: the weight has shape {shape_of(W)}; expected 2-D")
    n_out, n_here = shape_of(W)
    if n_in is not None and n_here != n_in:
        raise ValueError(
            f"{source} layer {l} takes {n_here} inputs, but layer {l - 1} gives {n_in} "
            "outputs: the layers must be given in order, each feeding the next"
        )
    if b is None:
        b = jnp.zeros((n_out,), W.dtype)  # use_bias=False: b = 0
    b = as_real_array(b, f"{source} layer {l}'s bias")
    if shape_of(b) != (n_out,):
        raise ValueError(
            f"{source} layer {l}: the bias has shape {shape_of(b)}, the weight has {n_out} "
            f"outputs, so it should be ({n_out},)"
        )
    return {"W": jnp.asarray(W), "b": jnp.asarray(b)}


def from_flax(params: Any) -> list[Layer]:
    """jaxnn parameters from Flax Dense layers: ``W = kernel^T``, ``b = bias`` ``(n_out,)``.

    Args:
      params: a Linen variables dict ``{"params": {"Dense_0": {"kernel", "bias"}, ...}}``
        (``model.init(...)``), its ``"params"`` dict, a list of ``{"kernel", "bias"}``
        dicts, or a list of ``flax.nnx.Linear`` layers, in the order they apply.
        Linen's numbered names (``Dense_0``, ..., ``Dense_10``; ``layers_0``, ... of
        ``nn.Sequential``) are taken by number; other names in the dict's order.

    Returns:
      One ``{"W": (n_out, n_in), "b": (n_out,)}`` per layer; a layer without a bias
      gets zeros. ``to_flax`` is its inverse.

    Warning:
      Flax's kernel is ``(in, out)`` and computes ``x @ kernel``; jaxnn's W is
      ``(out, in)`` and computes ``W a``. A kernel passed as W is rejected
      (unless square, where it would silently be the transpose): convert with this.
    """
    layers, _, _ = _flax_layers(params)
    out, n_in = [], None
    for l, layer in enumerate(layers, start=1):
        kernel = _field(layer, "kernel")
        if kernel is None:
            raise ValueError(f"Flax layer {l} has no kernel; from_flax takes {_FLAX_FORMS}")
        kernel = as_real_array(kernel, f"Flax layer {l}'s kernel")
        if len(shape_of(kernel)) != 2:
            raise ValueError(
                f"Flax layer {l}: the kernel has shape {shape_of(kernel)}; a Dense kernel is "
                "(in, out)"
            )
        out.append(_layer(jnp.asarray(kernel).T, _field(layer, "bias"), l, "Flax", n_in))
        n_in = shape_of(kernel)[1]
    return out


def to_flax(params: Params, *, like: Any = None) -> Any:
    """Flax Dense parameters from jaxnn's: ``kernel = W^T`` ``(in, out)``, ``bias`` ``(out,)``.

    Works on gradients too (they have the params' shapes), so hand gradients
    come back in Flax's tree.

    Args:
      params: one ``{"W", "b"}`` per layer (``b`` ``(n, 1)`` or ``(n,)``).
      like: a Flax tree in one of the forms ``from_flax`` takes (not NNX layers); the
        result has its names, its ``{"params": ...}`` wrapper if it has one, and its
        dtypes. None: ``{"params": {"Dense_0": ..., "Dense_1": ...}}``, Linen's names
        for the Dense layers of a compact module.

    Returns:
      A nested dict for ``model.apply``, or a list of dicts where ``like`` is a list.
    """
    layers = _check_jaxnn_params(params, "to_flax")
    dense = [
        {"kernel": jnp.asarray(layer["W"]).T, "bias": jnp.reshape(layer["b"], (-1,))}
        for layer in layers
    ]
    if like is None:
        return {"params": {f"Dense_{l}": d for l, d in enumerate(dense)}}
    template, names, wrapped = _flax_layers(like)
    if len(template) != len(dense):
        raise ValueError(f"to_flax: params has {len(dense)} layers, like has {len(template)}")
    for l, (d, t) in enumerate(zip(dense, template, strict=True), start=1):
        for key in ("kernel", "bias"):
            want = _field(t, key)
            if want is None:
                continue
            if shape_of(want) != shape_of(d[key]):
                raise ValueError(
                    f"to_flax: layer {l}'s {key} would have shape {shape_of(d[key])}, like's "
                    f"has {shape_of(want)}"
                )
            d[key] = d[key].astype(want.dtype)
        if _field(t, "bias") is None:
            del d["bias"]  # like's layer has no bias (use_bias=False)
    if names is None:
        return dense
    tree = dict(zip(names, dense, strict=True))
    return {"params": tree} if wrapped else tree


def _check_jaxnn_params(params: Any, caller: str) -> list[Layer]:
    """``params`` as a list of ``{"W", "b"}`` dicts, W 2-D; a ValueError otherwise."""
    if not isinstance(params, (list, tuple)) or not params:
        raise ValueError(
            f"{caller}: params must be a list with one {{'W', 'b'}} dict per layer, got "
            f"{type(params).__name__}"
        )
    for l, layer in enumerate(params, start=1):
        if not isinstance(layer, Mapping) or set(layer) != {"W", "b"}:
            got = sorted(layer) if isinstance(layer, Mapping) else type(layer).__name__
            raise ValueError(
                f"{caller}: layer {l}: expected a dict with keys 'W' and 'b', got {got}"
            )
        if len(shape_of(layer["W"])) != 2:
            raise ValueError(
                f"{caller}: layer {l}: W has shape {shape_of(layer['W'])}; expected (out, in)"
            )
    return list(params)


def _equinox_linears(model: Any, caller: str) -> list[Any]:
    """The ``eqx.nn.Linear`` layers of a Linear, an MLP or a sequence of Linears, in order."""
    import equinox as eqx

    if isinstance(model, eqx.nn.Linear):
        return [model]
    if isinstance(model, eqx.nn.MLP):
        return list(model.layers)
    if isinstance(model, Sequence) and model and all(isinstance(m, eqx.nn.Linear) for m in model):
        return list(model)
    raise ValueError(
        f"{caller} takes an eqx.nn.Linear, an eqx.nn.MLP or a list of eqx.nn.Linear, "
        f"got {type(model).__name__}"
    )


def from_equinox(model: Any) -> list[Layer]:
    """jaxnn parameters from Equinox: ``W = weight`` ``(out, in)``, ``b = bias`` ``(out,)``.

    Args:
      model: an ``eqx.nn.Linear``, an ``eqx.nn.MLP`` (its ``layers``), or a list of
        ``eqx.nn.Linear`` in the order they apply.

    Returns:
      One ``{"W": (n_out, n_in), "b": (n_out,)}`` per layer (zeros for a layer made
      with ``use_bias=False``); ``to_equinox`` is its inverse.
    """
    out, n_in = [], None
    for l, linear in enumerate(_equinox_linears(model, "from_equinox"), start=1):
        out.append(_layer(linear.weight, linear.bias, l, "Equinox", n_in))
        n_in = shape_of(linear.weight)[0]
    return out


def to_equinox(params: Params, model: Any) -> Any:
    """``model`` (an ``eqx.nn.Linear``, ``eqx.nn.MLP`` or list of them) with jaxnn's
    parameters in place of its weights and biases, each in the model's own shape and dtype.

    Gradients have the params' shapes, so ``to_equinox(grads, model)`` is the tree
    ``eqx.filter_grad`` gives (the model's other fields, such as the activation,
    are kept as they are). A layer of ``model`` without a bias must get b = 0.

    Args:
      params: one ``{"W": (out, in), "b": (out, 1) or (out,)}`` per layer.
      model: the Equinox model whose layout to take.
    """
    import equinox as eqx

    linears = _equinox_linears(model, "to_equinox")
    layers = _check_jaxnn_params(params, "to_equinox")
    if len(layers) != len(linears):
        raise ValueError(
            f"to_equinox: params has {len(layers)} layers, the Equinox model {len(linears)}"
        )
    new = []
    for l, (layer, linear) in enumerate(zip(layers, linears, strict=True), start=1):
        if shape_of(layer["W"]) != shape_of(linear.weight):
            raise ValueError(
                f"to_equinox: layer {l}: W has shape {shape_of(layer['W'])}, the Equinox "
                f"layer's weight {shape_of(linear.weight)} (out, in)"
            )
        W = jnp.asarray(layer["W"], linear.weight.dtype)
        if linear.bias is None:
            b = layer["b"]
            if not isinstance(b, jax.core.Tracer) and np.any(np.asarray(b) != 0):
                raise ValueError(
                    f"to_equinox: layer {l} of the Equinox model has no bias "
                    "(use_bias=False), but b is not zero"
                )
            new.append(eqx.tree_at(lambda m: m.weight, linear, W))
            continue
        if np.size(layer["b"]) != np.size(linear.bias):
            raise ValueError(
                f"to_equinox: layer {l}: b has shape {shape_of(layer['b'])}, the Equinox "
                f"layer's bias {shape_of(linear.bias)}"
            )
        b = jnp.reshape(jnp.asarray(layer["b"], linear.bias.dtype), linear.bias.shape)
        new.append(eqx.tree_at(lambda m: (m.weight, m.bias), linear, (W, b)))
    if isinstance(model, eqx.nn.Linear):
        return new[0]
    if isinstance(model, eqx.nn.MLP):
        return eqx.tree_at(lambda m: m.layers, model, tuple(new))
    return type(model)(new) if isinstance(model, (list, tuple)) else new
