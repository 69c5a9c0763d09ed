"""``jaxnn.onnx_export``: the exported graph, run by onnxruntime, equals an independent
float64 reference (standardise, ``jaxnn.predict`` on the transposed input, the head rule),
for every hidden activation and every output head, at batch sizes 1 and 7 of one model.

Tolerance: 1e-5 absolute. The graph computes in float32 (unit roundoff 6e-8), the
reference in float64 from the same float32 parameters and inputs, so the difference is
float32 rounding accumulated through standardisation, two layers of small matmuls and
the activations, on outputs of order 1: measured at about 1e-7, so 1e-5 leaves two
orders of margin and still catches any wrong formula (a transposed W, a missing bias, a
softmax on the wrong axis all give errors of order 0.1). Regression values on a target's
own scale (say mean 152, std 77) are compared relative to that scale instead: float32
itself cannot hold 152 to better than 1.5e-5.
"""

import itertools
import os

import jax
import numpy as np
import pytest

import jaxnn
from jaxnn import activations
from tests.helpers import HIDDEN, run_script, sample

onnx = pytest.importorskip("onnx", reason="the ONNX export needs onnx (pip install jaxnn[cli])")
ort = pytest.importorskip(
    "onnxruntime", reason="running the exported graph needs onnxruntime (pip install jaxnn[dev])"
)

from jaxnn.onnx_export import (  # noqa: E402
    ACTIVATION_OPS,
    DEFAULT_OPSET,
    GELU_OPSET,
    save_onnx,
    to_onnx,
)

ATOL = 1e-5
N_FEATURES = 5
BATCH_SIZES = (1, 7)
# The output heads: (output activation, loss, output units, task, target scaling).
HEADS = {
    "softmax": ("softmax", "cross_entropy", 3, "classification", False),
    "binary": ("sigmoid", "binary_cross_entropy", 1, "classification", False),
    "multilabel": ("sigmoid", "binary_cross_entropy", 4, "classification", False),
    "regression": ("linear", "mse", 2, "regression", True),
    "regression_unscaled": ("linear", "mse", 1, "regression", False),
    "tanh_mse": ("tanh", "mse", 2, "regression", True),
}


def session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )


def make_case(hidden: str, head: str, seed: int = 0):
    """A network with two hidden layers of ``hidden``, float32 parameters with non-zero
    biases, and random standardisation (and target scaling) statistics."""
    output, loss, n_out, task, scaled = HEADS[head]
    net = jaxnn.Network((N_FEATURES, 6, 5, n_out), (hidden, hidden, output), loss)
    params = jaxnn.init_params(jax.random.key(seed), net, method="pytorch", dtype=np.float32)
    params = [{k: np.asarray(v) for k, v in layer.items()} for layer in params]
    rng = np.random.default_rng(seed)
    stats = {
        "feature_mean": rng.normal(0.0, 3.0, N_FEATURES),
        "feature_std": rng.uniform(0.5, 4.0, N_FEATURES),
    }
    if scaled:
        stats["target_mean"] = rng.normal(0.0, 2.0, n_out)
        stats["target_std"] = rng.uniform(0.5, 2.0, n_out)
    return net, params, task, stats


def raw_inputs(stats, m: int, seed: int) -> np.ndarray:
    """Raw features on the scale the statistics describe, with spread enough to reach
    both sides of relu's kink and sigmoid's flat tails."""
    rng = np.random.default_rng(seed)
    Z = rng.normal(0.0, 2.0, (m, N_FEATURES))
    return (stats["feature_mean"] + stats["feature_std"] * Z).astype(np.float32)


def reference(net, params, X, task, stats) -> np.ndarray:
    """The model in float64, written from the contract: standardise, the network in the
    column layout (jaxnn.predict on X_hat^T), then the head."""
    params64 = [{k: np.asarray(v, np.float64) for k, v in layer.items()} for layer in params]
    X = np.asarray(X, np.float64)
    X_hat = (X - stats["feature_mean"]) / stats["feature_std"]
    A = np.asarray(jaxnn.predict(params64, X_hat.T, net)).T  # (m, n_L)
    if task == "classification":
        if A.shape[1] == 1:
            return np.concatenate([1.0 - A, A], axis=1)
        return A
    return A * stats.get("target_std", 1.0) + stats.get("target_mean", 0.0)


def test_every_jaxnn_activation_has_an_onnx_operator():
    """An activation added to jaxnn without an export fails here, not in a user's export."""
    assert set(ACTIVATION_OPS) == set(activations.ACTIVATIONS)


# The inner loop runs every 7th (hidden, head) pair (7 is coprime with both counts).
@pytest.mark.slow
@pytest.mark.parametrize(
    ("hidden", "head"), sample(itertools.product(HIDDEN, HEADS), 7, unpack=True)
)
def test_onnxruntime_equals_float64_reference(hidden, head):
    net, params, task, stats = make_case(hidden, head)
    model = to_onnx(net, params, **stats, task=task)
    run = session(model)
    want_width = 2 if HEADS[head][2] == 1 and task == "classification" else HEADS[head][2]
    for m in BATCH_SIZES:  # one model, one session: the batch dimension is symbolic
        X = raw_inputs(stats, m, seed=m)
        (got,) = run.run(None, {"input": X})
        want = reference(net, params, X, task, stats)
        assert got.dtype == np.float32
        assert got.shape == want.shape == (m, want_width)
        err = float(np.max(np.abs(got - want)))
        assert err <= ATOL, f"{hidden}/{head}, m={m}: max |onnx - reference| = {err:.2e}"


def test_binary_probabilities_are_complementary_columns():
    net, params, task, stats = make_case("relu", "binary")
    X = raw_inputs(stats, 7, seed=3)
    (P,) = session(to_onnx(net, params, **stats, task=task)).run(None, {"input": X})
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-6)
    assert np.any(P[:, 1] > 0.5) or np.any(P[:, 1] < 0.5)


def test_regression_on_the_targets_own_scale():
    """A target like diabetes' (mean 152, std 77): within float32's resolution of the values."""
    net, params, task, stats = make_case("tanh", "regression_unscaled")
    stats = {**stats, "target_mean": 152.0, "target_std": 77.0}  # scalars broadcast
    X = raw_inputs(stats, 7, seed=4)
    (got,) = session(to_onnx(net, params, **stats, task=task)).run(None, {"input": X})
    want = reference(net, params, X, task, stats)
    scale = float(np.max(np.abs(want)))
    assert np.max(np.abs(got - want)) <= ATOL * max(scale, 1.0)


@pytest.mark.parametrize("opset", [13, DEFAULT_OPSET, 21])
def test_opsets(opset):
    net, params, task, stats = make_case("leaky_relu", "softmax")
    model = to_onnx(net, params, **stats, task=task, opset=opset)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", opset)]
    assert model.ir_version == onnx.helper.find_min_ir_version_for(model.opset_import)
    X = raw_inputs(stats, 7, seed=5)
    (got,) = session(model).run(None, {"input": X})
    assert np.max(np.abs(got - reference(net, params, X, task, stats))) <= ATOL


@pytest.mark.parametrize("hidden", ["gelu", "gelu_tanh"])
def test_gelu_is_one_operator_from_opset_20_and_spelled_out_below(hidden):
    """ONNX's Gelu (approximate "none" or "tanh") from opset 20; Erf or Tanh below it.
    Both graphs compute jaxnn's gelu within ATOL."""
    net, params, task, stats = make_case(hidden, "regression")
    X = raw_inputs(stats, 7, seed=6)
    want = reference(net, params, X, task, stats)
    spelled = "Erf" if hidden == "gelu" else "Tanh"
    for opset, op in ((GELU_OPSET, "Gelu"), (GELU_OPSET - 1, spelled)):
        model = to_onnx(net, params, **stats, task=task, opset=opset)
        nodes = {node.op_type: node for node in model.graph.node}
        assert op in nodes and ("Gelu" in nodes) == (opset >= GELU_OPSET), list(nodes)
        (got,) = session(model).run(None, {"input": X})
        assert np.max(np.abs(got - want)) <= ATOL
        if op == "Gelu":
            (attribute,) = nodes["Gelu"].attribute
            assert (attribute.name, attribute.s.decode()) == (
                "approximate",
                "none" if hidden == "gelu" else "tanh",
            )


def test_graph_interface_and_metadata():
    net, params, task, stats = make_case("relu", "softmax")
    names = [f"x{i}" for i in range(N_FEATURES)]
    model = to_onnx(net, params, **stats, task=task, feature_names=names)
    onnx.checker.check_model(model, full_check=True)
    assert (model.opset_import[0].version, model.ir_version) == (DEFAULT_OPSET, 8)
    (inp,) = model.graph.input
    (out,) = model.graph.output
    assert inp.name == "input" and out.name == "probabilities"
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == [
        "m",
        N_FEATURES,
    ]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["m", 3]
    props = {p.key: p.value for p in model.metadata_props}
    assert props["task"] == "classification"
    assert props["feature_names"] == '["x0", "x1", "x2", "x3", "x4"]'
    assert "x0, x1" in model.doc_string
    assert model.producer_name == "jaxnn" and model.producer_version == jaxnn.__version__
    net, params, task, stats = make_case("relu", "regression")
    regression = to_onnx(net, params, **stats, task=task)
    assert [o.name for o in regression.graph.output] == ["values"]
    assert {p.key: p.value for p in regression.metadata_props}["task"] == "regression"


def test_unknown_activation_is_a_value_error(monkeypatch):
    """An activation jaxnn knows but the exporter does not: named, with the valid ones."""
    monkeypatch.setitem(
        activations.ACTIVATIONS,
        "mish",
        activations.Activation("mish", jax.nn.mish, jax.nn.sigmoid, None),
    )
    net = jaxnn.Network((N_FEATURES, 4, 3), ("mish", "softmax"), "cross_entropy")
    params = jaxnn.init_params(jax.random.key(0), net)
    with pytest.raises(ValueError, match=r"layer 1: activation 'mish' .*'sigmoid'.*'softplus'"):
        to_onnx(net, params, np.zeros(N_FEATURES), np.ones(N_FEATURES), task="classification")


def _bad(**change):
    net, params, task, stats = make_case("relu", "softmax")
    kwargs = {"net": net, "params": params, **stats, "task": task, **change}
    net, params = kwargs.pop("net"), kwargs.pop("params")
    return lambda: to_onnx(net, params, **kwargs)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"task": "clustering"}, "unknown task 'clustering'"),
        ({"target_mean": 1.0}, "classification has none"),
        ({"feature_mean": np.zeros(3)}, r"feature_mean has shape \(3,\), expected \(5,\)"),
        ({"feature_std": np.array([1, 1, 0, 1, 1.0])}, r"feature_std\[2\] is 0"),
        ({"feature_mean": np.array([0, np.nan, 0, 0, 0])}, r"feature_mean\[1\] is nan"),
        ({"feature_names": ["a", "b"]}, "feature_names must be 5 strings"),
        ({"opset": 12}, "opset must be an integer from 13"),
        ({"params": [{"W": np.zeros((6, 4)), "b": np.zeros((6, 1))}] * 3}, "layer 1: W has shape"),
    ],
)
def test_bad_arguments_are_value_errors(change, message):
    with pytest.raises(ValueError, match=message):
        _bad(**change)()


def test_classification_needs_a_probability_output():
    net, params, _, stats = make_case("relu", "regression")
    with pytest.raises(ValueError, match="needs a softmax or sigmoid output layer, got 'linear'"):
        to_onnx(net, params, stats["feature_mean"], stats["feature_std"], task="classification")


def test_save_onnx_round_trip(tmp_path):
    net, params, task, stats = make_case("tanh", "multilabel")
    model = to_onnx(net, params, **stats, task=task, feature_names=list("abcde"))
    path = tmp_path / "model.onnx"
    save_onnx(model, str(path))
    assert onnx.load(str(path)) == model
    assert os.listdir(tmp_path) == ["model.onnx"]
    save_onnx(model, path)  # os.PathLike too, over an existing file
    assert onnx.load(str(path)) == model


def test_save_onnx_leaves_nothing_on_failure(tmp_path, monkeypatch):
    net, params, task, stats = make_case("relu", "softmax")
    model = to_onnx(net, params, **stats, task=task)
    path = tmp_path / "model.onnx"
    path.write_bytes(b"the previous model")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save_onnx(model, str(path))
    assert os.listdir(tmp_path) == ["model.onnx"]
    assert path.read_bytes() == b"the previous model"
    monkeypatch.undo()
    with pytest.raises(FileNotFoundError):
        save_onnx(model, str(tmp_path / "missing" / "model.onnx"))
    with pytest.raises(TypeError, match=r"onnx\.ModelProto"):
        save_onnx(b"not a model", str(tmp_path / "other.onnx"))
    assert os.listdir(tmp_path) == ["model.onnx"]


@pytest.mark.slow
def test_import_jaxnn_does_not_import_onnx():
    script = (
        "import sys, jaxnn, jaxnn.onnx_export\n"
        "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules, 'onnx loaded'\n"
    )
    result = run_script(script)
    assert result.returncode == 0, result.stderr
