"""Malformed input to every public function: a clear ValueError or a correct result.

Hypothesis draws one malformed argument at a time (wrong ndim or shape, NaN,
no examples, int and bool dtypes, float32, object, string and complex arrays,
ragged and plain lists, None) and checks the public functions against a table
of expectations: ``ValueError`` with a message, or the same result as the
well-formed float64 input gives. Any other exception (a TypeError from jnp,
an XLA error) fails the test.
"""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

import jaxnn
from jaxnn import data, optim, parallel, train

# Each example hypothesis draws is a new program to compile: CI runs these, the inner
# loop does not (each function took 1 to 6 s there).
pytestmark = pytest.mark.slow

# Derandomized: the same examples every run, so CI's outcome cannot change by chance.
# Every kind of malformed argument runs as an explicit example (``every_kind``); the
# drawn examples add other combinations of the rest.
SETTINGS = settings(max_examples=10, deadline=None, database=None, derandomize=True)


def every_kind(kinds, **others):
    """One ``hypothesis.example`` per kind; ``others`` maps each other argument to a
    function of the kind's index, so that they vary from one kind to the next."""

    def decorate(test):
        for i, kind in enumerate(kinds):
            test = example(kind=kind, **{k: f(i) for k, f in others.items()})(test)
        return test

    return decorate


N_X, N_Y = 3, 2
NET = jaxnn.Network((N_X, 4, N_Y), ("tanh", "softmax"), "cross_entropy")
_rng = np.random.default_rng(0)
PARAMS = [
    {"W": _rng.normal(size=(4, N_X)), "b": _rng.normal(size=(4, 1))},
    {"W": _rng.normal(size=(N_Y, 4)), "b": _rng.normal(size=(N_Y, 1))},
]
TEST_SET = (_rng.normal(size=(N_X, 2)), np.eye(N_Y)[:, [0, 1]])
MESH = parallel.make_mesh(1)
OPTIMIZER = optim.sgd(0.1)  # one object, so that fit's compiled epoch is reused

ERROR = "error"


def clean(n, m, rng, targets):
    if targets:  # one-hot columns
        return np.eye(n)[:, rng.integers(0, n, m)]
    return rng.normal(size=(n, m))


def variant(kind, n, m, rng, targets=False):
    """(the argument to pass, the well-formed float input it stands for, or ERROR)."""
    x = clean(n, m, rng, targets)
    if kind == "good":
        return x, x
    if kind == "list":
        return x.tolist(), x
    if kind == "int":
        x = x.astype(int) if targets else rng.integers(-3, 4, (n, m))
        return x, x.astype(np.float64)
    if kind == "bool":
        x = x > 0.5
        return x, x.astype(np.float64)
    if kind == "float32":
        return x.astype(np.float32), x.astype(np.float32)
    if kind == "nan":
        x[0, -1] = np.nan
        return x, x
    if kind == "empty":
        return np.zeros((n, 0)), np.zeros((n, 0))
    if kind == "vector":
        return x[:, 0], x[:, 0]
    if kind == "transposed":
        return x.T, (x.T if n == m else ERROR)
    malformed = {
        "wrong_rows": clean(n + 1, m, rng, targets),
        "3d": x[None],
        "scalar": 1.0,
        "none": None,
        "object": x.astype(object),
        "strings": x.astype(str),
        "complex": x + 1j,
        "ragged": [[1.0, 2.0], [3.0]],
    }
    return malformed[kind], ERROR


KINDS = [
    "good", "list", "int", "bool", "float32", "nan", "empty", "vector", "transposed",
    "wrong_rows", "3d", "scalar", "none", "object", "strings", "complex", "ragged",
]  # fmt: skip


def fit_params(X, Y, params=PARAMS):
    ds = data.Dataset(X, Y, *TEST_SET, "classification", "softmax", "cross_entropy")
    return train.fit(NET, OPTIMIZER, ds, 1, 1, jax.random.key(0), params=params).params


FUNCTIONS = {
    # name: (function of (params, X, Y), kinds that are errors here though well-formed
    # elsewhere, kinds that are fine here though malformed elsewhere)
    "cost": (lambda p, X, Y: jaxnn.cost(p, X, Y, NET), {"empty"}, set()),
    "backprop": (lambda p, X, Y: jaxnn.backprop(p, X, Y, NET), {"empty"}, set()),
    "forward": (lambda p, X, Y: jaxnn.forward(p, X, NET), set(), set()),
    "predict": (lambda p, X, Y: jaxnn.predict(p, X, NET), set(), set()),
    "evaluate": (lambda p, X, Y: train.evaluate(p, X, Y, NET), {"empty"}, set()),
    "fit": (lambda p, X, Y: fit_params(X, Y, p), {"empty", "vector", "nan"}, set()),
    # shard knows no network: any 2-D array of numbers is a batch.
    "shard": (
        lambda p, X, Y: parallel.shard(X, MESH),
        {"vector"},
        {"wrong_rows", "transposed"},
    ),
}
TAKES_Y = {"cost", "backprop", "evaluate", "fit"}


def assert_same(got, want):
    got, want = jax.tree.leaves(got), jax.tree.leaves(want)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert np.shape(a) == np.shape(b)
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, equal_nan=True)


# What a malformed argument's message must say: what is wrong with it, in words that
# only that problem's message uses.
WORDS = {
    "empty": r"no examples|is empty",
    "vector": r"has shape \(\d+,\)",
    "transposed": r"has shape \(\d+, \d+\), the network expects .*transpose it"
    r"|has \d+ examples \(columns\) but Y_train has \d+",
    "wrong_rows": r"has shape \(\d+, \d+\), the network expects \(\d+, m\)",
    "3d": r"has shape \(1, \d+, \d+\)",
    "scalar": r"has shape \(\)",
    "none": r"is None; expected an array",
    "object": r"has dtype object; expected real numbers",
    "strings": r"has dtype <U\d+; expected real numbers",
    "complex": r"has dtype complex128; expected real numbers",
    "ragged": r"is not a rectangular array of numbers",
    "nan": r"non-finite values \(NaN or Inf\)|the cost became nan at step 1 of",
    # parameters (PARAM_KINDS)
    "list_W": r"^layer 1: W is a list; parameters must be arrays",
    "int_W": r"^layer 1: W has dtype int64; parameters must be floating point",
    "b_row": r"^layer 2: b has shape \(1, 2\), the network expects \(2, 1\) or \(2,\)",
    "W_transposed": r"^layer 1: W has shape \(3, 4\), the network expects \(4, 3\)",
    "missing_b": r"^layer 2: expected a dict with keys 'W' and 'b', got \['W'\]",
    "extra_layer": r"^params has 3 layers, the network has 2",
    "one_layer_dict": r"^params must be a list with one dict per layer, got dict",
    "none_params": r"^params must be a list with one dict per layer, got NoneType",
    "object_W": r"^layer 1: W has dtype object; parameters must be floating point",
}


def check(fn, args, reference_args, expect_error, words):
    """fn(*args) raises a ValueError whose message matches every pattern of ``words`` if
    expected, else it equals fn(*reference_args)."""
    try:
        got = fn(*args)
    except ValueError as e:
        assert expect_error, f"unexpected ValueError: {e}"
        for pattern in words:
            assert re.search(pattern, str(e)), (pattern, str(e))
        return
    assert not expect_error, "a malformed input was accepted"
    assert_same(got, fn(*reference_args))


@pytest.mark.parametrize("name", sorted(FUNCTIONS))
@SETTINGS
@every_kind(KINDS, in_y=lambda i: i % 2 == 1, m=lambda i: (1, 3)[i // 2 % 2], seed=lambda i: i)
@given(
    kind=st.sampled_from(KINDS),
    in_y=st.booleans(),
    m=st.sampled_from([1, 3]),
    seed=st.integers(0, 2**16),
)
def test_malformed_arrays(name, kind, in_y, m, seed):
    fn, errors, fine = FUNCTIONS[name]
    in_y = in_y and name in TAKES_Y
    rng = np.random.default_rng(seed)
    if kind == "vector":
        m = 1
    X, Y = clean(N_X, m, rng, False), clean(N_Y, m, rng, True)
    if kind in ("empty", "vector"):  # both arrays, so that their numbers of examples agree
        X, X_ref = variant(kind, N_X, m, rng)
        Y, Y_ref = variant(kind, N_Y, m, rng, targets=True)
    elif in_y:
        Y, Y_ref = variant(kind, N_Y, m, rng, targets=True)
        X_ref = X
    else:
        X, X_ref = variant(kind, N_X, m, rng)
        Y_ref = Y
        if kind in fine:
            X_ref = X
    malformed = any(r is ERROR for r in (X_ref, Y_ref))
    expect_error = malformed or kind in errors
    # The message names the argument (X, or X_train in fit) and says what is wrong with it.
    arg = "Y" if in_y and kind not in ("empty", "vector") else "X"
    words = (rf"\b{arg}(_train)?\b", WORDS[kind]) if expect_error else None
    check(fn, (PARAMS, X, Y), (PARAMS, X_ref, Y_ref), expect_error, words)


def param_variant(kind, rng):
    """(params to pass, the params they stand for, or ERROR)."""
    p = [dict(layer) for layer in PARAMS]
    if kind == "good":
        return p, p
    if kind == "tuple":
        return tuple(p), p
    if kind == "jax":
        return jax.tree.map(jnp.asarray, p), p
    if kind == "float32":
        p32 = jax.tree.map(lambda x: x.astype(np.float32), p)
        return p32, p32
    if kind == "nan":
        p[1]["W"] = p[1]["W"].copy()
        p[1]["W"][0, rng.integers(0, 4)] = np.nan
        return p, p
    if kind == "list_W":
        p[0]["W"] = p[0]["W"].tolist()
    elif kind == "int_W":
        p[0]["W"] = p[0]["W"].astype(int)
    elif kind == "b_row":  # (n,) and (n, 1) are biases; a row (1, n) is not
        p[1]["b"] = p[1]["b"].T
    elif kind == "W_transposed":
        p[0]["W"] = p[0]["W"].T
    elif kind == "missing_b":
        del p[1]["b"]
    elif kind == "extra_layer":
        p.append(p[-1])
    elif kind == "one_layer_dict":
        p = p[0]
    elif kind == "none":
        p = None
    elif kind == "object_W":
        p[0]["W"] = p[0]["W"].astype(object)
    return p, ERROR


PARAM_KINDS = [
    "good", "tuple", "jax", "float32", "nan", "list_W", "int_W", "b_row", "W_transposed",
    "missing_b", "extra_layer", "one_layer_dict", "none", "object_W",
]  # fmt: skip


@pytest.mark.parametrize("name", sorted(set(FUNCTIONS) - {"shard"}))
@SETTINGS
@every_kind(PARAM_KINDS, m=lambda i: (1, 3)[i % 2], seed=lambda i: i)
@given(kind=st.sampled_from(PARAM_KINDS), m=st.sampled_from([1, 3]), seed=st.integers(0, 99))
def test_malformed_params(name, kind, m, seed):
    fn = FUNCTIONS[name][0]
    rng = np.random.default_rng(seed)
    X, Y = clean(N_X, m, rng, False), clean(N_Y, m, rng, True)
    params, reference = param_variant(kind, rng)
    if name == "fit" and kind == "none":  # fit's default: fresh parameters
        reference = None
    # fit with NaN params: the first batch cost is NaN, a NonFiniteCostError (a ValueError).
    expect_error = reference is ERROR or (name == "fit" and kind == "nan")
    words = (WORDS["none_params" if kind == "none" else kind],) if expect_error else None
    check(fn, (params, X, Y), (reference, X, Y), expect_error, words)


LABELS = {
    # kind: (labels from an rng and n_classes, whether they are valid)
    "ints": (lambda rng, n: rng.integers(0, n, 5), True),
    "uint8": (lambda rng, n: rng.integers(0, n, 5).astype(np.uint8), True),
    "integral_floats": (lambda rng, n: rng.integers(0, n, 5) * 1.0, True),
    "list": (lambda rng, n: rng.integers(0, n, 5).tolist(), True),
    "empty": (lambda rng, n: np.zeros(0, int), True),
    "too_large": (lambda rng, n: np.append(rng.integers(0, n, 4), n), False),
    "negative": (lambda rng, n: np.append(rng.integers(0, n, 4), -1), False),
    "fractional": (lambda rng, n: rng.integers(0, n, 5) + 0.5, False),
    "nan": (lambda rng, n: np.append(rng.integers(0, n, 4) * 1.0, np.nan), False),
    "2d": (lambda rng, n: rng.integers(0, n, (5, 1)), False),
    "strings": (lambda rng, n: np.array(["1", "2"]), False),
    "objects": (lambda rng, n: [None, 1], False),
    "ragged": (lambda rng, n: [[1], [1, 2]], False),
}


@SETTINGS
@given(
    kind=st.sampled_from(sorted(LABELS)),
    n_classes=st.sampled_from([1, 2, 10, 0, -3, 2.5, True, "3"]),
    seed=st.integers(0, 99),
)
def test_one_hot(kind, n_classes, seed):
    make, valid = LABELS[kind]
    good_n = isinstance(n_classes, int) and not isinstance(n_classes, bool) and n_classes >= 1
    labels = make(np.random.default_rng(seed), n_classes if good_n else 2)
    try:
        Y = data.one_hot(labels, n_classes)
    except ValueError as e:
        assert not (valid and good_n), f"unexpected ValueError: {e}"
        return
    assert valid and good_n
    y = np.asarray(labels, dtype=int)
    assert Y.shape == (n_classes, len(y)) and Y.dtype == np.float64
    np.testing.assert_array_equal(Y.sum(axis=0), 1)
    np.testing.assert_array_equal(Y.argmax(axis=0), y)
