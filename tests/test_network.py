"""The network: its specification, initialisation, forward pass, cost, and input checks.

``reference_cost`` below is a plain transcription of the seeds' forward pass and
costs, written without jaxnn (a loop over layers, the log of the activations);
``tests/test_backprop.py`` takes its ``jax.grad`` as a second witness.
"""

import dataclasses
import itertools
import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxnn
from jaxnn.network import INIT_METHODS, param_types
from tests.helpers import assert_trees_close, max_relative_error

# ---------------------------------------------------------------------------
# An independent reference: the seeds' formulas, literally, in jax.numpy.

REFERENCE_ACTIVATIONS = {
    "sigmoid": lambda z: 1 / (1 + jnp.exp(-z)),  # (A1)
    "tanh": lambda z: (jnp.exp(z) - jnp.exp(-z)) / (jnp.exp(z) + jnp.exp(-z)),  # (A3)
    "relu": lambda z: jnp.where(z > 0, z, 0.0),  # (A5)
    "leaky_relu": lambda z: jnp.where(z > 0, z, 0.01 * z),  # (A7)
    "linear": lambda z: z,  # (A9)
    "softmax": lambda z: jnp.exp(z) / jnp.sum(jnp.exp(z), axis=0, keepdims=True),  # (A11)
    "gelu": lambda z: z / 2 * (1 + jax.scipy.special.erf(z / jnp.sqrt(2.0))),  # (A12)
    "gelu_tanh": lambda z: z / 2 * (1 + jnp.tanh(math.sqrt(2 / math.pi) * (z + 0.044715 * z**3))),
    "silu": lambda z: z / (1 + jnp.exp(-z)),  # (A16)
    "softplus": lambda z: jnp.log(1 + jnp.exp(z)),  # (A18)
}


def reference_output(params, X, net):
    """A^[L] by (F-Z) and (F-A), layer after layer."""
    A = X
    for layer, name in zip(params, net.activations, strict=True):
        A = REFERENCE_ACTIVATIONS[name](layer["W"] @ A + layer["b"])
    return A


def reference_cost(params, X, Y, net):
    """(F-Z), (F-A), then (C1)-(C3) from log(A), and the mean over the m columns (C-M)."""
    return reference_loss(reference_output(params, X, net), Y, net.loss)


def reference_loss(A, Y, loss):
    """(C1)-(C3) per column, then the mean over the m columns (C-M)."""
    if loss == "mse":
        per_example = 0.5 * jnp.sum((Y - A) ** 2, axis=0)
    elif loss == "binary_cross_entropy":
        per_example = -jnp.sum(Y * jnp.log(A) + (1 - Y) * jnp.log(1 - A), axis=0)
    else:
        per_example = -jnp.sum(Y * jnp.log(A), axis=0)
    return jnp.sum(per_example) / A.shape[1]


def random_params(sizes, seed, dtype=np.float64):
    """Weights and non-zero biases, so that every pre-activation is O(1) and b matters."""
    rng = np.random.default_rng(seed)
    return [
        {
            "W": jnp.asarray(rng.normal(0, 1.5 / math.sqrt(n_in), (n_out, n_in)), dtype),
            "b": jnp.asarray(rng.normal(0, 0.5, (n_out, 1)), dtype),
        }
        for n_in, n_out in itertools.pairwise(sizes)
    ]


def random_targets(loss, n, m, rng, soft=False):
    """One-hot or soft labels (CE), binary or fractional targets (BCE), reals in (0, 1) (MSE)."""
    if loss == "cross_entropy":
        if soft:
            return rng.dirichlet(np.ones(n), size=m).T
        return np.eye(n)[:, rng.integers(0, n, size=m)]
    if loss == "binary_cross_entropy" and not soft:
        return rng.integers(0, 2, size=(n, m)).astype(np.float64)
    return rng.uniform(0.05, 0.95, size=(n, m))


# One network per loss family, with every width distinct (a transposed W fails loudly).
NETS = {
    "cross_entropy": jaxnn.Network((4, 5, 6, 3), ("tanh", "relu", "softmax"), "cross_entropy"),
    "binary_cross_entropy": jaxnn.Network(
        (4, 5, 6, 3), ("leaky_relu", "softmax", "sigmoid"), "binary_cross_entropy"
    ),
    "mse": jaxnn.Network((4, 5, 6, 3), ("sigmoid", "linear", "tanh"), "mse"),
}
M = 7


def data(net, seed=0, m=M, soft=False):
    rng = np.random.default_rng(seed)
    X = jnp.asarray(rng.normal(size=(net.sizes[0], m)))
    Y = jnp.asarray(random_targets(net.loss, net.sizes[-1], m, rng, soft))
    return random_params(net.sizes, seed + 100), X, Y


# ---------------------------------------------------------------------------
# Cost and forward pass against the reference.


@pytest.mark.slow
@pytest.mark.parametrize("soft", [False, True], ids=["hard", "soft"])
@pytest.mark.parametrize("loss", sorted(NETS))
def test_cost_equals_reference_cost(loss, soft):
    """jaxnn.cost (stable, from Z) equals the seeds' log(A) form at moderate values."""
    net = NETS[loss]
    params, X, Y = data(net, seed=1, soft=soft)
    got, want = jaxnn.cost(params, X, Y, net), reference_cost(params, X, Y, net)
    assert got.shape == ()
    assert abs(got - want) <= 1e-13 * abs(want)
    assert want > 0


def test_forward_cache_structure_and_values():
    """(F-Z), (F-A): Z has L entries, A has L + 1 and A[0] is X; values against NumPy."""
    net = NETS["cross_entropy"]
    params, X, _ = data(net)
    cache = jaxnn.forward(params, X, net)
    assert isinstance(cache, jaxnn.Cache)
    assert len(cache.Z) == net.L and len(cache.A) == net.L + 1
    assert cache.A[0] is X
    A = np.asarray(X)
    for l, (layer, name) in enumerate(zip(params, net.activations, strict=True)):
        Z = np.asarray(layer["W"]) @ A + np.asarray(layer["b"])
        A = np.asarray(REFERENCE_ACTIVATIONS[name](Z))
        assert cache.Z[l].shape == (net.sizes[l + 1], M)
        assert cache.A[l + 1].shape == (net.sizes[l + 1], M)
        assert max_relative_error(cache.Z[l], Z) <= 1e-13
        assert max_relative_error(cache.A[l + 1], A) <= 1e-13
    np.testing.assert_allclose(np.sum(np.asarray(cache.A[-1]), axis=0), 1.0, rtol=1e-14)


def test_predict_matrix_and_vector():
    """predict is A^[L]; a vector X of length n_x is one example and gives a vector."""
    net = NETS["mse"]
    params, X, _ = data(net)
    out = jaxnn.predict(params, X, net)
    assert out.shape == (3, M)
    assert_trees_close(out, reference_output(params, X, net), 1e-14, "predict")
    one = jaxnn.predict(params, X[:, 2], net)
    assert one.shape == (3,)
    np.testing.assert_allclose(one, out[:, 2], rtol=1e-14)


def test_vector_example_cost_equals_one_column():
    net = NETS["binary_cross_entropy"]
    params, X, Y = data(net)
    got = jaxnn.cost(params, X[:, 3], Y[:, 3], net)
    want = reference_cost(params, X[:, 3:4], Y[:, 3:4], net)
    assert abs(got - want) <= 1e-13 * abs(want)


# ---------------------------------------------------------------------------
# jax.jit and jax.vmap.


def test_cost_and_predict_under_jit_with_static_net():
    """The network is a static argument; new values of the same shapes do not retrace."""
    net = NETS["cross_entropy"]
    traces = []

    def traced_cost(params, X, Y, net):
        traces.append(net)
        return jaxnn.cost(params, X, Y, net)

    jit_cost = jax.jit(traced_cost, static_argnames="net")
    jit_predict = jax.jit(jaxnn.predict, static_argnums=2)
    for seed in (0, 1, 2):
        params, X, Y = data(net, seed=seed)
        assert abs(jit_cost(params, X, Y, net) - reference_cost(params, X, Y, net)) <= 1e-12
        np.testing.assert_allclose(
            jit_predict(params, X, net), reference_output(params, X, net), rtol=1e-13
        )
    assert len(traces) == 1
    # An equal network built from lists hits the same cache entry.
    equal_net = jaxnn.Network(list(net.sizes), list(net.activations), net.loss)
    jit_cost(params, X, Y, equal_net)
    assert len(traces) == 1


@pytest.mark.slow
def test_vmap_over_parameter_sets():
    """Parameters stacked on a leading axis: vmap of cost and predict equals one set at a time."""
    net = NETS["mse"]
    sets = [data(net, seed=s)[0] for s in range(3)]
    _, X, Y = data(net)
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *sets)
    costs = jax.vmap(jaxnn.cost, in_axes=(0, None, None, None))(stacked, X, Y, net)
    outs = jax.vmap(jaxnn.predict, in_axes=(0, None, None))(stacked, X, net)
    assert costs.shape == (3,) and outs.shape == (3, 3, M)
    for k, params in enumerate(sets):
        assert abs(costs[k] - reference_cost(params, X, Y, net)) <= 1e-13 * costs[k]
        np.testing.assert_allclose(outs[k], reference_output(params, X, net), rtol=1e-13)


@pytest.mark.slow
def test_vmap_over_examples():
    """in_axes over the columns of X and Y: each example is a vector; the mean is the cost."""
    net = NETS["cross_entropy"]
    params, X, Y = data(net, soft=True)
    per_example = jax.vmap(jaxnn.cost, in_axes=(None, 1, 1, None))(params, X, Y, net)
    outs = jax.vmap(jaxnn.predict, in_axes=(None, 1, None), out_axes=1)(params, X, net)
    assert per_example.shape == (M,)
    assert abs(jnp.mean(per_example) - reference_cost(params, X, Y, net)) <= 1e-13
    np.testing.assert_allclose(outs, reference_output(params, X, net), rtol=1e-13)


# ---------------------------------------------------------------------------
# The Network spec.


def test_network_is_hashable_and_lists_become_tuples():
    a = jaxnn.Network([2, 3, 2], ["relu", "softmax"], "cross_entropy")
    b = jaxnn.Network((2, 3, 2), ("relu", "softmax"), "cross_entropy")
    c = jaxnn.Network((2, 3, 2), ("tanh", "softmax"), "cross_entropy")
    assert a.sizes == (2, 3, 2) and type(a.sizes) is tuple
    assert a.activations == ("relu", "softmax") and type(a.activations) is tuple
    assert a == b and hash(a) == hash(b)
    assert a != c
    assert {a: 1}[b] == 1
    assert a.L == 2
    numpy_sizes = jaxnn.Network(np.array([2, 3, 2]), ("relu", "softmax"), "cross_entropy")
    assert numpy_sizes == a and all(type(n) is int for n in numpy_sizes.sizes)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.loss = "mse"


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            dict(sizes=(2, 3), activations=("swish",), loss="mse"),
            r"layer 1: unknown activation 'swish'; valid names: 'sigmoid', 'tanh', 'relu', "
            r"'leaky_relu', 'linear', 'softmax'",
        ),
        (
            dict(sizes=(2, 3), activations=("linear",), loss="hinge"),
            r"unknown loss 'hinge'; valid names: 'mse', 'binary_cross_entropy', 'cross_entropy'",
        ),
        (
            dict(sizes=(2, 3, 2), activations=("relu",), loss="mse"),
            r"got 1 activations for 2 layers .*one activation per layer",
        ),
        (
            dict(sizes=(2, 3), activations="linear", loss="mse"),
            r"activations must be a sequence of names.*got the string 'linear'",
        ),
        (
            dict(sizes=(4,), activations=(), loss="mse"),
            r"sizes needs at least two entries \(inputs and outputs\)",
        ),
        (dict(sizes=(2, 0), activations=("linear",), loss="mse"), r"sizes\[1\] must be .* got 0"),
        (
            dict(sizes=(2, 2.5), activations=("linear",), loss="mse"),
            r"sizes\[1\] must be .* got 2.5",
        ),
        (
            dict(sizes=(True, 2), activations=("linear",), loss="mse"),
            r"sizes\[0\] must be .* got True",
        ),
        (
            dict(sizes=(2, 3), activations=("sigmoid",), loss="cross_entropy"),
            r"loss 'cross_entropy' needs an output activation in \('softmax',\), "
            r"got 'sigmoid' for layer 1",
        ),
        (
            dict(sizes=(2, 3), activations=("softmax",), loss="binary_cross_entropy"),
            r"loss 'binary_cross_entropy' needs an output activation in \('sigmoid',\)",
        ),
        (
            dict(sizes=(2, 1), activations=("softmax",), loss="mse"),
            r"layer 1: softmax needs at least 2 units \(n\^\[1\] >= 2\)",
        ),
        (
            dict(sizes=(2, 1, 3), activations=("softmax", "linear"), loss="mse"),
            r"layer 1: softmax needs at least 2 units",
        ),
    ],
    ids=[
        "unknown-activation",
        "unknown-loss",
        "activation-count",
        "activations-string",
        "one-size",
        "size-zero",
        "size-float",
        "size-bool",
        "ce-needs-softmax",
        "bce-needs-sigmoid",
        "softmax-one-unit",
        "hidden-softmax-one-unit",
    ],
)
def test_bad_network_spec_raises(kwargs, match):
    with pytest.raises(ValueError, match=match):
        jaxnn.Network(**kwargs)


# ---------------------------------------------------------------------------
# Bad inputs: checked at the boundary, before any math.

BAD_NET = jaxnn.Network((3, 4, 2), ("tanh", "softmax"), "cross_entropy")


def _bad_inputs():
    params, X, Y = data(BAD_NET, m=5)
    W1_wrong = [{"W": params[0]["W"].T, "b": params[0]["b"]}, params[1]]
    b2_wrong = [params[0], {"W": params[1]["W"], "b": params[1]["b"][:1]}]  # (2,) is fine
    return {
        "X-rows": (
            (params, X[:2], Y),
            r"X has shape \(2, 5\), the network expects \(3, m\) \(n_x x m, one example per "
            r"column\)",
        ),
        "X-transposed": (
            (params, X.T, Y),
            r"X has shape \(5, 3\).*expects \(3, m\).*examples go in columns, so transpose it",
        ),
        "X-3d": ((params, X[None], Y), r"X has shape \(1, 3, 5\)"),
        "Y-rows": ((params, X, Y[:1]), r"Y has shape \(1, 5\), the network expects \(2, m\)"),
        "Y-transposed": ((params, X, Y.T), r"Y has shape \(5, 2\).*so transpose it"),
        "m-mismatch": (
            (params, X, Y[:, :4]),
            r"X has shape \(3, 5\) and Y has shape \(2, 4\): they need the same number of "
            r"examples m",
        ),
        "params-length": ((params[:1], X, Y), r"params has 1 layers, the network has 2"),
        "params-not-list": ((params[0], X, Y), r"params must be a list.*got dict"),
        "layer-keys": (
            ([params[0], {"W": params[1]["W"]}], X, Y),
            r"layer 2: expected a dict with keys 'W' and 'b', got \['W'\]",
        ),
        "W-shape": (
            (W1_wrong, X, Y),
            r"layer 1: W has shape \(3, 4\), the network expects \(4, 3\) \(n\^\[1\] x n\^\[0\]\)",
        ),
        "b-shape": (
            (b2_wrong, X, Y),
            r"layer 2: b has shape \(1, 1\), the network expects \(2, 1\) or \(2,\) "
            r"\(n\^\[2\] x 1, or n\^\[2\] as Flax and Equinox hold it\)",
        ),
    }


BAD_CASES = _bad_inputs()
CHECKED = {
    "cost": lambda p, X, Y: jaxnn.cost(p, X, Y, BAD_NET),
    "backprop": lambda p, X, Y: jaxnn.backprop(p, X, Y, BAD_NET),
    "jit-value_and_backprop": lambda p, X, Y: jax.jit(jaxnn.value_and_backprop, static_argnums=3)(
        p, X, Y, BAD_NET
    ),
    "forward": lambda p, X, Y: jaxnn.forward(p, X, BAD_NET),
}


@pytest.mark.parametrize(
    ("case", "entry"),
    [
        (case, entry)
        for case in sorted(BAD_CASES)
        for entry in sorted(CHECKED)
        if not (entry == "forward" and case.startswith(("Y-", "m-")))  # forward takes no Y
    ],
)
def test_bad_inputs_raise_before_any_math(case, entry):
    """Each error names what is wrong. The W-shape case would otherwise fail inside the
    matmul with a different error type; under jit it is raised at trace time."""
    args, match = BAD_CASES[case]
    with pytest.raises(ValueError, match=match) as excinfo:
        CHECKED[entry](*args)
    if case == "X-rows":
        assert "transpose" not in str(excinfo.value)  # the hint only when it is the transpose


def test_valid_inputs_are_accepted_by_every_entry_point():
    """The same entry points with the unbroken inputs: the failures above are the inputs'."""
    params, X, Y = data(BAD_NET, m=5)
    want = reference_cost(params, X, Y, BAD_NET)
    assert abs(jaxnn.cost(params, X, Y, BAD_NET) - want) <= 1e-13 * want
    value, _ = CHECKED["jit-value_and_backprop"](params, X, Y)
    assert abs(value - want) <= 1e-13 * want


# ---------------------------------------------------------------------------
# Initialisation. Every jax.random call compiles once per shape and dtype, so these tests
# reuse few shapes: float32 on a small network, float64 (the default) on one large layer.


@pytest.mark.parametrize("method", INIT_METHODS)
def test_init_shapes_dtypes_and_zero_biases(method):
    net = jaxnn.Network((4, 5, 3), ("relu", "softmax"), "cross_entropy")
    params = jaxnn.init_params(jax.random.PRNGKey(0), net, method=method, dtype=jnp.float32)
    assert isinstance(params, list) and len(params) == net.L
    for l, layer in enumerate(params):
        assert set(layer) == {"W", "b"}
        assert layer["W"].shape == (net.sizes[l + 1], net.sizes[l])
        assert layer["b"].shape == (net.sizes[l + 1], 1)
        assert layer["W"].dtype == jnp.float32 and layer["b"].dtype == jnp.float32
        assert np.all(np.isfinite(layer["W"])) and np.std(layer["W"]) > 0
        if method != "pytorch":
            assert not np.any(layer["b"]), f"{method}: biases must start at zero"


# n_in != n_out so a fan-out or fan-average formula would miss by a factor of 4 or 2.5.
N_IN, N_OUT = 1000, 250
VARIANCES = {
    "he": 2 / N_IN,
    "glorot": 2 / (N_IN + N_OUT),  # U(-r, r) has variance r^2 / 3
    "lecun": 1 / N_IN,  # truncated normal, rescaled so its variance is 1 / n_in
    "normal": 1 / N_IN,
    "pytorch": 1 / (3 * N_IN),
}
BOUNDS = {  # the support of the distribution, where it is bounded
    "glorot": math.sqrt(6 / (N_IN + N_OUT)),
    "lecun": 2 * math.sqrt(1 / N_IN) / 0.87962566103423978,
    "pytorch": 1 / math.sqrt(N_IN),
}


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(VARIANCES))
def test_init_empirical_variance(method):
    """250k draws: the sample variance is within ~0.5% of the truth; we allow 5%."""
    net = jaxnn.Network((N_IN, N_OUT), ("linear",), "mse")
    params = jaxnn.init_params(jax.random.PRNGKey(3), net, method=method)
    assert params[0]["W"].dtype == jnp.float64  # JAX's default float, x64 being on
    assert params[0]["W"].shape == (N_OUT, N_IN) and params[0]["b"].shape == (N_OUT, 1)
    W = np.asarray(params[0]["W"])
    assert abs(np.mean(W)) < 0.05 * math.sqrt(VARIANCES[method])
    assert np.var(W) == pytest.approx(VARIANCES[method], rel=0.05)
    if method in BOUNDS:
        assert np.max(np.abs(W)) <= BOUNDS[method]
    b = np.asarray(params[0]["b"])
    if method == "pytorch":
        assert np.max(np.abs(b)) <= BOUNDS["pytorch"] and np.std(b) > 0
    else:
        assert not np.any(b)


@pytest.mark.slow
@pytest.mark.parametrize(
    "acts", [("relu", "tanh", "leaky_relu"), ("gelu", "softplus", "silu", "gelu_tanh")]
)
def test_init_auto_picks_he_for_relu_family_and_glorot_otherwise(acts):
    """He for the activations that are 0 for z << 0 and z for z >> 0, softplus aside (its
    mean log 2 grows rms(Z) under He: init_params' docstring has the measurement)."""
    net = jaxnn.Network((400, 300, 500, 200, 300)[: len(acts) + 1], acts, "mse")
    params = jaxnn.init_params(jax.random.PRNGKey(5), net)  # method="auto"
    for l, (layer, act) in enumerate(zip(params, acts, strict=True)):
        n_in, n_out = net.sizes[l], net.sizes[l + 1]
        W = np.asarray(layer["W"])
        r = math.sqrt(6 / (n_in + n_out))  # glorot's U(-r, r); a normal's tails pass r
        if act in ("relu", "leaky_relu", "gelu", "gelu_tanh", "silu"):  # he: N(0, 2 / n_in)
            assert np.var(W) == pytest.approx(2 / n_in, rel=0.05) and np.max(np.abs(W)) > r
        else:  # glorot: variance 2 / (n_in + n_out), he would be 2.7x more
            assert np.var(W) == pytest.approx(2 / (n_in + n_out), rel=0.05)
            assert np.max(np.abs(W)) <= r


def test_init_unknown_method():
    with pytest.raises(ValueError, match=r"unknown init method 'xavier'; valid methods: \("):
        jaxnn.init_params(jax.random.PRNGKey(0), NETS["mse"], method="xavier")


@pytest.mark.slow
def test_init_float32_params_give_float32_cost_and_predictions():
    net = jaxnn.Network((4, 5, 3), ("relu", "softmax"), "cross_entropy")
    params = jaxnn.init_params(jax.random.PRNGKey(1), net, dtype=jnp.float32)
    _, X, Y = data(net)
    X32, Y32 = X.astype(jnp.float32), Y.astype(jnp.float32)
    assert jaxnn.predict(params, X32, net).dtype == jnp.float32
    c = jaxnn.cost(params, X32, Y32, net)
    assert c.dtype == jnp.float32
    p64 = jax.tree.map(lambda x: x.astype(jnp.float64), params)
    assert abs(c - reference_cost(p64, X, Y, net)) <= 1e-5 * c


def test_net_must_be_a_network():
    params, X, Y = data(BAD_NET, m=5)
    for call in (
        lambda: jaxnn.cost(params, X, Y, "net"),
        lambda: jaxnn.backprop(params, X, Y, (3, 4, 2)),
        lambda: jaxnn.init_params(jax.random.PRNGKey(0), (3, 2)),
    ):
        with pytest.raises(ValueError, match=r"net must be a jaxnn.Network, got (str|tuple)"):
            call()


@pytest.mark.parametrize(
    ("key", "dtype", "match"),
    [
        (0, None, r"key must be a jax.random key .* got int with shape \(\)"),
        (np.zeros(3, np.uint32), None, r"key must be a jax.random key"),
        (None, jnp.int32, r"dtype must be a floating type, got int32"),
    ],
)
def test_init_params_rejects_bad_key_and_dtype(key, dtype, match):
    key = jax.random.PRNGKey(0) if key is None else key
    with pytest.raises(ValueError, match=match):
        jaxnn.init_params(key, BAD_NET, dtype=dtype)


def test_param_types_are_init_params_types_without_tracing():
    net = jaxnn.Network((4, 5, 3), ("relu", "softmax"), "cross_entropy")
    key = jax.random.key(0)
    # (x64, dtype asked, dtype made): float64 needs x64; without it JAX warns and narrows
    cases = [(True, None, "float64"), (True, jnp.float32, "float32"), (False, None, "float32")]
    cases.append((False, jnp.float64, "float32"))
    for x64, dtype, made in cases:
        with jax.enable_x64(x64), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            types = param_types(net, dtype)
            params = jaxnn.init_params(key, net, dtype=dtype)
        assert [(t["W"].shape, t["b"].shape) for t in types] == [((5, 4), (5, 1)), ((3, 5), (3, 1))]
        assert {t[k].dtype for t in types for k in t} == {np.dtype(made)}
        assert jax.tree.map(lambda p: (p.shape, p.dtype), params) == jax.tree.map(
            lambda t: (t.shape, t.dtype), types
        )
        assert any("float64" in str(w.message) for w in caught) == (dtype is not None and not x64)
    with pytest.raises(ValueError, match=r"param_types: dtype must be a floating type"):
        param_types(net, jnp.int32)


def test_init_params_accepts_typed_keys():
    params = jaxnn.init_params(jax.random.key(0), BAD_NET)
    assert [p["W"].shape for p in params] == [(4, 3), (2, 4)]


def test_vector_x_with_matrix_y_names_the_mix():
    params, X, Y = data(BAD_NET, m=1)
    with pytest.raises(ValueError, match=r"give both as vectors \(one example\) or both as"):
        jaxnn.cost(params, X[:, 0], Y, BAD_NET)
