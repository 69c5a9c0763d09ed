"""A trained network as an ONNX graph, preprocessing included: ``jaxnn export``'s engine.

The graph takes raw float32 features ``input`` of shape ``(m, n_features)``, one example
per row, with a symbolic batch dimension ``"m"``, and computes, in float32:

  X_hat   = (X - mean) / std                                     standardisation
  Z^[l]   = A^[l-1] W^[l]^T + b^[l]^T                            (F-Z-R)
  A^[l]   = sigma(Z^[l])                                         (F-A), (A1)-(A19)

then its one output, by task:

  * ``"classification"``: ``probabilities`` ``(m, n_classes)``: a softmax output as it
    is; one sigmoid unit (binary) as the two columns ``[1 - p, p]``; several sigmoid
    units (multilabel) as their p's;
  * ``"regression"``: ``values`` ``(m, n_outputs)`` = ``A^[L] * target_std + target_mean``,
    each factor where given.

jaxnn holds examples in columns (``Z = W A + b``); ONNX runtimes and their users hold
them in rows, so the graph is the row layout of ``jaxnn.rows``, with the same ``W``
stored transposed once, as ``(n^[l-1], n^[l])``, and ``b`` as a row. The ``onnx``
package builds and checks the graph; it is imported inside the functions, so ``import
jaxnn`` does not need it (it is in the ``cli`` extra).
"""

import functools
import json
import math
import os
import secrets
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import ArrayLike

import jaxnn
from jaxnn import activations
from jaxnn.network import Network, Params
from jaxnn.validation import check_params

if TYPE_CHECKING:
    import onnx

__all__ = [
    "ACTIVATION_OPS",
    "DEFAULT_OPSET",
    "GELU_OPSET",
    "MIN_OPSET",
    "TASKS",
    "save_onnx",
    "to_onnx",
]

# 17 is the newest opset that every onnxruntime since 1.13 (2022) runs, and it has all
# the operators the graph needs; the file then declares IR version 8, its minimum.
DEFAULT_OPSET = 17
# Softmax acts along one axis (rather than on the flattened trailing axes) from opset 13.
MIN_OPSET = 13
TASKS = ("classification", "regression")

# ONNX's Gelu operator (with approximate "none" or "tanh") exists from opset 20; below
# it, the graph spells gelu out with Erf or Tanh.
GELU_OPSET = 20


def _gelu_nodes(helper, Z: str, A: str, opset: int, approximate: str):
    """Nodes and constants computing A = gelu(Z): one Gelu from opset 20, else
    0.5 Z (1 + erf(Z / sqrt 2)) (A12) or 0.5 Z (1 + tanh(sqrt(2/pi)(Z + 0.044715 Z^3))) (A14)."""
    if opset >= GELU_OPSET:
        return [helper.make_node("Gelu", [Z], [A], approximate=approximate)], {}
    n = lambda op, inputs, out: helper.make_node(op, inputs, [f"{Z}_{out}"])
    if approximate == "none":  # (A12)
        constants = {"gelu_rsqrt2": math.sqrt(0.5)}
        inner = [n("Mul", [Z, "gelu_rsqrt2"], "u"), n("Erf", [f"{Z}_u"], "t")]
    else:  # (A14)
        constants = {"gelu_c": math.sqrt(2 / math.pi), "gelu_k": 0.044715}
        inner = [
            n("Mul", [Z, Z], "z2"),
            n("Mul", [f"{Z}_z2", Z], "z3"),
            n("Mul", [f"{Z}_z3", "gelu_k"], "kz3"),
            n("Add", [Z, f"{Z}_kz3"], "v"),
            n("Mul", [f"{Z}_v", "gelu_c"], "u"),
            n("Tanh", [f"{Z}_u"], "t"),
        ]
    constants |= {"gelu_one": 1.0, "gelu_half": 0.5}
    outer = [
        n("Add", [f"{Z}_t", "gelu_one"], "1pt"),
        n("Mul", [f"{Z}_1pt", "gelu_half"], "cdf"),
        helper.make_node("Mul", [Z, f"{Z}_cdf"], [A]),
    ]
    return inner + outer, constants


def _silu_nodes(helper, Z: str, A: str, opset: int):
    """A = Z Sigmoid(Z)   (A16)"""
    del opset
    sigmoid = helper.make_node("Sigmoid", [Z], [f"{Z}_sigmoid"])
    return [sigmoid, helper.make_node("Mul", [Z, f"{Z}_sigmoid"], [A])], {}


# Each activation of ``jaxnn.activations.ACTIVATIONS`` in ONNX: an operator with its
# attributes; None, the identity (no node); or a function ``(helper, Z, A, opset) ->
# (nodes, {constant name: value})`` for those written with several operators.
# Softmax's axis 1 is the units of a row.
ACTIVATION_OPS: dict[str, tuple[str, dict] | Callable | None] = {
    "sigmoid": ("Sigmoid", {}),  # (A1)
    "tanh": ("Tanh", {}),  # (A3)
    "relu": ("Relu", {}),  # (A5)
    "leaky_relu": ("LeakyRelu", {"alpha": activations.LEAKY_SLOPE}),  # (A7): x < 0 -> alpha x
    "linear": None,  # (A9)
    "softmax": ("Softmax", {"axis": 1}),  # (A11), per row
    "gelu": functools.partial(_gelu_nodes, approximate="none"),  # (A12)
    "gelu_tanh": functools.partial(_gelu_nodes, approximate="tanh"),  # (A14)
    "silu": _silu_nodes,  # (A16)
    "softplus": ("Softplus", {}),  # (A18): log(exp(x) + 1)
}


def _vector(value, n: int, name: str, what: str, scalar_ok: bool = False) -> np.ndarray:
    """``value`` as a float32 vector of ``n`` entries, one per ``what``: ``(n,)``, ``(n, 1)``
    or ``(1, n)``, or a scalar where ``scalar_ok`` (one scale for every output)."""
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0 and scalar_ok:
        a = np.full(n, float(a))
    if a.shape not in {(n,), (n, 1), (1, n)}:
        raise ValueError(f"{name} has shape {a.shape}, expected ({n},): one entry per {what}")
    a = a.reshape(n)
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ValueError(f"{name}[{bad[0]}] is {a[bad[0]]}; every entry must be finite")
    return a.astype(np.float32)


def _check_head(net: Network, task: str, target_mean, target_std) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(map(repr, TASKS))}")
    output = net.activations[-1]
    if task == "classification":
        if output not in ("softmax", "sigmoid"):
            raise ValueError(
                f"task 'classification' needs a softmax or sigmoid output layer, got {output!r} "
                f"for layer {net.L}; export it with task='regression'"
            )
        if target_mean is not None or target_std is not None:
            raise ValueError(
                "target_mean and target_std scale a regression's values; a classification "
                "has none, so leave them None"
            )


def to_onnx(
    net: Network,
    params: Params,
    feature_mean: ArrayLike,
    feature_std: ArrayLike,
    *,
    task: str,
    target_mean: ArrayLike | None = None,
    target_std: ArrayLike | None = None,
    feature_names: Sequence[str] | None = None,
    opset: int | None = None,
) -> "onnx.ModelProto":
    """The whole model as an ONNX graph: standardisation, the layers, and the output head.

    ``X_hat = (X - feature_mean) / feature_std``, then ``Z^[l] = A^[l-1] W^[l]^T + b^[l]^T``
    (F-Z-R) and ``A^[l] = sigma(Z^[l])`` (F-A) for l = 1..L, in float32, one example per
    row; then ``probabilities`` (classification) or ``values = A^[L] * target_std +
    target_mean`` (regression). See the module docstring for the heads.

    Args:
      net: the network; every activation must be in ``ACTIVATION_OPS``.
      params: jaxnn's parameters, ``params[l] = {"W": (n^[l+1], n^[l]), "b": (n^[l+1], 1)}``
        (layer l + 1 of the math), NumPy or JAX arrays; stored as float32.
      feature_mean: ``(n_features,)``, subtracted from the raw features.
      feature_std: ``(n_features,)``, divided into them as given (no epsilon added;
        a zero is refused, since it would give inf).
      task: ``"classification"`` (a softmax or sigmoid output layer) or ``"regression"``.
      target_mean: regression only: added to the output, a scalar or ``(n_outputs,)``.
      target_std: regression only: multiplies the output, a scalar or ``(n_outputs,)``.
      feature_names: the input's columns in order, kept in the model's metadata
        (``metadata_props["feature_names"]``, a JSON list) and its doc string.
      opset: the ONNX operator set, ``MIN_OPSET`` to the installed onnx's newest;
        ``DEFAULT_OPSET`` (17) if None. The IR version is the least that opset needs.
        gelu and gelu_tanh are one ``Gelu`` node from ``GELU_OPSET`` (20) on, and
        spelled out with ``Erf`` or ``Tanh`` below it; silu is ``Z * Sigmoid(Z)``.

    Returns:
      A checked ``onnx.ModelProto`` (``onnx.checker.check_model`` with shape inference)
      with input ``input`` ``(m, n_features)`` float32 and one output, ``probabilities``
      or ``values``, ``(m, n_outputs)``; for a single sigmoid unit, ``probabilities``
      has two columns.

    Example:
      >>> model = to_onnx(net, params, mean, std, task="classification")
      >>> save_onnx(model, "model.onnx")
      >>> onnxruntime.InferenceSession("model.onnx").run(None, {"input": X_rows})

    Warning:
      jaxnn's arrays hold examples in columns, ``(n_features, m)``; the graph takes
      rows, ``(m, n_features)``, as onnxruntime's users pass them. A binary
      classifier's one sigmoid unit becomes two probability columns, as scikit-learn's
      ``predict_proba`` gives them.
    """
    import onnx
    from onnx import TensorProto, helper

    mean, std, feature_names, opset = _check_export(
        net, params, feature_mean, feature_std, task, target_mean, target_std, feature_names, opset
    )
    n_features = net.sizes[0]
    nodes, initializers, A = _layer_nodes(net, params, mean, std, opset)
    head_nodes, head_initializers, output, width = _head_nodes(
        net, A, task, target_mean, target_std
    )
    columns = "" if feature_names is None else f" Columns: {', '.join(feature_names)}."
    graph = helper.make_graph(
        nodes + head_nodes,
        "jaxnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["m", n_features])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["m", width])],
        initializer=initializers + head_initializers,
        doc_string=(
            f"raw features (m, {n_features}), standardised, through a jaxnn network "
            f"{net.sizes} {net.activations}, to {output} (m, {width}).{columns}"
        ),
    )
    opset_id = helper.make_opsetid("", opset)
    model = helper.make_model(
        graph,
        opset_imports=[opset_id],
        ir_version=helper.find_min_ir_version_for([opset_id]),
        producer_name="jaxnn",
        producer_version=jaxnn.__version__,
        doc_string=f"jaxnn {task} model: input (m, {n_features}) float32 -> {output}.{columns}",
    )
    metadata = {"task": task, "sizes": json.dumps(net.sizes)}
    metadata["activations"] = json.dumps(net.activations)
    if feature_names is not None:
        metadata["feature_names"] = json.dumps(feature_names)
    helper.set_model_props(model, metadata)
    onnx.checker.check_model(model, full_check=True)
    return model


def _check_export(
    net, params, feature_mean, feature_std, task, target_mean, target_std, feature_names, opset
):
    """``to_onnx``'s arguments checked before any graph is built: the standardisation as
    float32 vectors, the feature names as a list (or None), and the opset."""
    import onnx

    for l, name in enumerate(net.activations, start=1):
        if name not in ACTIVATION_OPS:
            valid = ", ".join(map(repr, ACTIVATION_OPS))
            raise ValueError(
                f"layer {l}: activation {name!r} has no ONNX export; exportable: {valid}"
            )
    check_params(params, net.sizes)
    _check_head(net, task, target_mean, target_std)
    n_features = net.sizes[0]
    mean = _vector(feature_mean, n_features, "feature_mean", "feature")
    std = _vector(feature_std, n_features, "feature_std", "feature")
    zero = np.flatnonzero(std == 0)
    if zero.size:
        raise ValueError(
            f"feature_std[{zero[0]}] is 0: standardising would divide by zero; give 1 for "
            "a constant feature"
        )
    if feature_names is not None:
        feature_names = list(feature_names)
        if len(feature_names) != n_features or not all(isinstance(s, str) for s in feature_names):
            raise ValueError(
                f"feature_names must be {n_features} strings, one per input of the network, "
                f"got {len(feature_names)} items"
            )
    newest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset is None else opset
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset must be an integer from {MIN_OPSET} to {newest}, got {opset!r}")
    return mean, std, feature_names, opset


def _layer_nodes(net: Network, params: Params, mean, std, opset: int):
    """The standardisation and the layers, (F-Z-R) and (F-A) in the row layout: the nodes,
    their initializers, and the name of A^[L]."""
    from onnx import helper, numpy_helper

    initializers = [
        numpy_helper.from_array(mean, "feature_mean"),
        numpy_helper.from_array(std, "feature_std"),
    ]
    nodes = [
        helper.make_node("Sub", ["input", "feature_mean"], ["input_centred"]),
        helper.make_node("Div", ["input_centred", "feature_std"], ["A0"]),
    ]
    A, initialized = "A0", set()
    for l, (layer, act_name) in enumerate(zip(params, net.activations, strict=True), start=1):
        W_T = np.asarray(layer["W"], dtype=np.float32).T  # (n^[l-1], n^[l]): the row layout
        b_T = np.asarray(layer["b"], dtype=np.float32).T  # (1, n^[l])
        initializers += [
            numpy_helper.from_array(np.ascontiguousarray(W_T), f"W{l}_T"),
            numpy_helper.from_array(np.ascontiguousarray(b_T), f"b{l}_T"),
        ]
        nodes += [
            helper.make_node("MatMul", [A, f"W{l}_T"], [f"A{l - 1}W{l}_T"]),
            helper.make_node("Add", [f"A{l - 1}W{l}_T", f"b{l}_T"], [f"Z{l}"]),  # (F-Z-R)
        ]
        op = ACTIVATION_OPS[act_name]
        A = f"Z{l}" if op is None else f"A{l}"
        if callable(op):
            more, constants = op(helper, f"Z{l}", A, opset)  # (F-A)
            nodes += more
            for name, value in constants.items():
                if name not in initialized:
                    initialized.add(name)
                    initializers.append(numpy_helper.from_array(np.array(value, np.float32), name))
        elif op is not None:
            nodes.append(helper.make_node(op[0], [f"Z{l}"], [A], **op[1]))  # (F-A)
    return nodes, initializers, A


def _head_nodes(net: Network, A: str, task: str, target_mean, target_std):
    """The output from A^[L]: ``probabilities`` (a single sigmoid unit as [1 - p, p]) or
    ``values`` (times target_std, plus target_mean, where given). Returns the nodes, their
    initializers, the output's name and its width."""
    from onnx import helper, numpy_helper

    nodes, initializers = [], []
    if task == "classification":
        output, width = "probabilities", net.sizes[-1]
        if net.activations[-1] == "sigmoid" and width == 1:  # binary: [1 - p, p]
            width = 2
            initializers.append(numpy_helper.from_array(np.array(1, np.float32), "one"))
            nodes += [
                helper.make_node("Sub", ["one", A], ["one_minus_p"]),
                helper.make_node("Concat", ["one_minus_p", A], [output], axis=1),
            ]
        else:
            nodes.append(helper.make_node("Identity", [A], [output]))
    else:
        output, width = "values", net.sizes[-1]
        for value, op, name in (
            (target_std, "Mul", "target_std"),
            (target_mean, "Add", "target_mean"),
        ):
            if value is not None:
                vector = _vector(value, net.sizes[-1], name, "output", scalar_ok=True)
                initializers.append(numpy_helper.from_array(vector, name))
                nodes.append(helper.make_node(op, [A, name], [f"{A}_{op.lower()}"]))
                A = f"{A}_{op.lower()}"
        nodes.append(helper.make_node("Identity", [A], [output]))
    return nodes, initializers, output, width


def save_onnx(model_proto: "onnx.ModelProto", path: str | os.PathLike) -> None:
    """Write ``model_proto`` to ``path`` atomically: a temporary file beside it, then
    ``os.replace``. On any failure the temporary file is removed and ``path`` is as it
    was (absent, or the previous file whole)."""
    import onnx

    if not isinstance(model_proto, onnx.ModelProto):
        raise TypeError(f"model_proto must be an onnx.ModelProto, got {type(model_proto).__name__}")
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
    # os.open with 0o666 lets the umask decide the mode, as open() would for path itself.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(model_proto.SerializeToString())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
