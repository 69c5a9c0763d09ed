"""JAX conventions (issue 25): biases of shape (n,), the row layout's per-example
functions, one example under ``jax.vmap``, a Network without a loss, what static
analysis and ``dir`` see, and labels checked under jit.

References are independent of the code under test: ``jax.grad`` of the cost
(autodiff), the same functions on ``(n, 1)`` biases, and the column functions on
transposed data. float64 to 1e-10 and float32 to 1e-4 of each leaf's scale.
"""

import ast
import importlib
import itertools
import pathlib
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import checkify

import jaxnn
from jaxnn import rows
from tests.helpers import assert_trees_close, fast_jit, sample
from tests.test_rows import NETS

M = 9
ROOT = pathlib.Path(__file__).resolve().parent.parent
TOLERANCES = [(jnp.float64, 1e-10), (jnp.float32, 1e-4)]


def cases(*factors, every):
    """(name, *values) for every network and every combination of the other factors (a
    (dtype, rtol) pair gives two values), as ``sample`` parameters, network by network.
    The inner loop keeps, with every=5 of 2 x 2 per network, every network and every value
    of each factor; with every=3 of 2, both dtypes and three networks of four."""
    flat = lambda value: value if isinstance(value, tuple) else (value,)
    combinations = [
        (name, *itertools.chain(*map(flat, values)))
        for name in NETS
        for values in itertools.product(*factors)
    ]
    return sample(combinations, every, unpack=True)


def problem(name, dtype=jnp.float64, seed=0, bias="vector"):
    """Column-layout X (n_x, m), Y (n_L, m) and params whose biases are (n,) ("vector"),
    (n, 1) ("column") or alternate by layer ("mixed")."""
    net = NETS[name]
    rng = np.random.default_rng(seed)
    params = []
    for l, (n_in, n_out) in enumerate(zip(net.sizes[:-1], net.sizes[1:], strict=True)):
        b = rng.normal(0, 0.5, n_out)
        if bias == "column" or (bias == "mixed" and l % 2):
            b = b[:, None]
        params.append(
            {
                "W": jnp.asarray(rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)), dtype),
                "b": jnp.asarray(b, dtype),
            }
        )
    X = jnp.asarray(rng.normal(size=(net.sizes[0], M)), dtype)
    n = net.sizes[-1]
    if net.loss == "cross_entropy":
        Y = np.eye(n)[:, rng.integers(0, n, M)]
    elif net.loss == "binary_cross_entropy":
        Y = rng.uniform(size=(n, M))
    else:
        Y = rng.normal(size=(n, M))
    return net, params, X, jnp.asarray(Y, dtype)


def as_columns(params):
    """The same params with every bias (n, 1) (NumPy's reshape: no program to compile)."""
    return [{"W": p["W"], "b": np.reshape(p["b"], (-1, 1))} for p in params]


def assert_shapes_like(tree, like, leading=()):
    for got, want in zip(jax.tree.leaves(tree), jax.tree.leaves(like), strict=True):
        assert got.shape == (*leading, *want.shape), (got.shape, want.shape)
        assert got.dtype == want.dtype


# --- 1. biases of shape (n,) -------------------------------------------------------------


def layout_results(params, X, Y, net):
    """What every function gives in both layouts; the same on (n, 1) biases is the
    reference of test_vector_biases_give_gradients_in_their_own_shape."""
    return {
        "backprop": jaxnn.backprop(params, X, Y, net),
        "hand_cost": jax.grad(jaxnn.cost_with_hand_gradients(net))(params, X, Y),
        "rows": rows.backprop(params, X.T, Y.T, net),
        "rows_autodiff": jax.grad(rows.cost)(params, X.T, Y.T, net),
        "rows_hand_cost": jax.grad(rows.cost_with_hand_gradients(net))(params, X.T, Y.T),
        "cost": (jaxnn.cost(params, X, Y, net), rows.cost(params, X.T, Y.T, net)),
        "predict": (jaxnn.predict(params, X, net), rows.predict(params, X.T, net)),
    }


def _vector_bias_results(params, columns, X, Y, net):
    """(results on params, the same on their (n, 1) columns), with autodiff references:
    one program."""
    got = layout_results(params, X, Y, net)
    sine = lambda f: jax.grad(lambda p: jnp.sum(jnp.sin(f(p))))(params)
    got["autodiff"] = jax.grad(jaxnn.cost)(params, X, Y, net)
    got["block"] = sine(lambda p: jaxnn.network_with_hand_gradients(net)(p, X))
    got["block_autodiff"] = sine(lambda p: jaxnn.predict(p, X, net))
    got["rows_block"] = sine(lambda p: rows.network_with_hand_gradients(net)(p, X.T))
    return got, layout_results(columns, X, Y, net)


vector_bias_results = fast_jit(_vector_bias_results)  # the Network is a leafless pytree


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "bias", "dtype", "rtol"), cases(["vector", "mixed"], TOLERANCES, every=5)
)
def test_vector_biases_give_gradients_in_their_own_shape(name, bias, dtype, rtol):
    """Every function takes b (n,) where it takes (n, 1), in both layouts, and returns
    its gradient as (n,): equal to jax.grad (autodiff of the cost) and to the same
    functions on (n, 1) biases."""
    net, params, X, Y = problem(name, dtype, bias=bias)
    got, ref = vector_bias_results(params, as_columns(params), X, Y, net)
    for key in ("backprop", "hand_cost", "rows", "rows_autodiff", "rows_hand_cost"):
        assert_shapes_like(got[key], params)
        assert_trees_close(got[key], got["autodiff"], rtol, key)
        assert_trees_close(as_columns(got[key]), ref[key], rtol, f"{key} (n, 1)")
    for key in ("block", "rows_block"):
        assert_shapes_like(got[key], params)
        assert_trees_close(got[key], got["block_autodiff"], rtol, key)
    assert_trees_close(got["cost"], ref["cost"], rtol)
    assert_trees_close(got["predict"], ref["predict"], rtol)


def _per_example_results(params, columns, X, Y, net):
    """(PE-G), its norms and the clipped mean (0.5) of params and of their (n, 1) columns."""
    return [
        (
            jaxnn.per_example_grads(p, X, Y, net),
            jaxnn.per_example_grad_norms(p, X, Y, net),
            jaxnn.clipped_mean_grads(p, X, Y, net, max_norm=0.5),
        )
        for p in (params, columns)
    ]


per_example_results = fast_jit(_per_example_results)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "dtype", "rtol"), cases(TOLERANCES, every=3))
def test_per_example_functions_take_vector_biases(name, dtype, rtol):
    """(PE-G) gives each example's b gradient as (n,) for a (n,) bias; norms and the
    clipped mean equal those of the (n, 1) params."""
    net, params, X, Y = problem(name, dtype, bias="mixed")
    (got, norms, clipped), (ref, ref_norms, ref_clipped) = per_example_results(
        params, as_columns(params), X, Y, net
    )
    assert_shapes_like(got, params, leading=(M,))
    assert_trees_close([{"W": g["W"], "b": np.reshape(g["b"], (M, -1, 1))} for g in got], ref, rtol)
    np.testing.assert_allclose(norms, ref_norms, rtol=rtol)
    assert_shapes_like(clipped, params)
    assert_trees_close(as_columns(clipped), ref_clipped, rtol)


def test_a_bias_of_another_shape_is_still_an_error():
    net, params, X, Y = problem("softmax+ce")
    for bad in ((4, 2), (1, 4), (4, 1, 1), (3,)):
        wrong = [params[0], {"W": params[1]["W"], "b": jnp.zeros(bad)}]
        match = re.escape(f"layer 2: b has shape {bad}, the network expects (4, 1) or (4,)")
        with pytest.raises(ValueError, match=match):
            jaxnn.cost(wrong, X, Y, net)
        with pytest.raises(ValueError, match=match):
            rows.backprop(wrong, X.T, Y.T, net)


def test_a_kernel_in_flax_layout_is_named():
    net, params, X, Y = problem("softmax+ce")
    wrong = [{"W": params[0]["W"].T, "b": params[0]["b"]}, params[1]]
    with pytest.raises(ValueError, match=r"layer 1: W has shape \(5, 7\).*jaxnn.from_flax"):
        jaxnn.cost(wrong, X, Y, net)


# --- 2. the row layout's per-example functions ----------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "bias", "dtype", "rtol"), cases(["vector", "column"], TOLERANCES, every=5)
)
def test_rows_per_example_functions_equal_columns_and_autodiff(name, bias, dtype, rtol):
    net, params, X, Y = problem(name, dtype, bias=bias)

    def everything(params, X, Y):
        one = lambda p, x, y: jaxnn.cost(p, x, y, net)  # example x's own cost, autodiff
        return (
            rows.per_example_grads(params, X.T, Y.T, net),
            jaxnn.per_example_grads(params, X, Y, net),
            jax.vmap(jax.grad(one), in_axes=(None, 1, 1))(params, X, Y),
            rows.per_example_grad_norms(params, X.T, Y.T, net),
            jaxnn.per_example_grad_norms(params, X, Y, net),
            rows.clipped_mean_grads(params, X.T, Y.T, net, 0.3),
            jaxnn.clipped_mean_grads(params, X, Y, net, 0.3),
            rows.clipped_mean_grads(params, X.T, Y.T, net, 1e9),
            jaxnn.backprop(params, X, Y, net),
        )

    r_pe, c_pe, auto, r_norms, c_norms, r_clip, c_clip, r_big, full = fast_jit(everything)(
        params, X, Y
    )
    assert_shapes_like(r_pe, params, leading=(M,))
    assert_trees_close(r_pe, c_pe, rtol, "rows vs columns")
    assert_trees_close(r_pe, auto, rtol, "rows vs vmap(grad)")
    # the references in NumPy: eager jnp would compile a program per operation
    flat = np.concatenate([np.reshape(g, (M, -1)) for g in jax.tree.leaves(auto)], axis=1)
    np.testing.assert_allclose(r_norms, np.linalg.norm(flat, axis=1), rtol=rtol)
    np.testing.assert_allclose(r_norms, c_norms, rtol=rtol)
    assert float(np.max(r_norms)) > 0.3  # the clipping below clips something
    scale = np.minimum(1.0, 0.3 / np.linalg.norm(flat, axis=1)).astype(flat.dtype)
    expected = jax.tree.map(
        lambda g: np.mean(np.asarray(g) * scale.reshape((M,) + (1,) * (g.ndim - 1)), 0), auto
    )
    assert_trees_close(r_clip, expected, rtol, "clipped vs reference")
    assert_trees_close(r_clip, c_clip, rtol, "clipped rows vs columns")
    assert_trees_close(r_big, full, rtol, "no clipping is backprop")


def test_rows_clipped_mean_grads_checks_max_norm():
    net, params, X, Y = problem("softmax+ce")
    for bad in (0, -1.0, "1"):
        with pytest.raises(ValueError, match="max_norm must be a positive number"):
            rows.clipped_mean_grads(params, X.T, Y.T, net, bad)


def string_constants(path: pathlib.Path):
    """Every string constant of a module but its docstrings: the messages and hints."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            if id(node) not in docstrings:
                yield node.lineno, node.value


def resolves(dotted: str) -> bool:
    """``jaxnn.a.b.c`` names a module or an attribute that exists."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


@pytest.mark.slow
def test_every_hint_naming_a_jaxnn_function_resolves():
    """Messages tell the user what to call: each ``jaxnn.<name>`` in a string of the
    package (docstrings aside) is a module or function that exists."""
    assert not resolves("jaxnn.rows.no_such_function") and resolves("jaxnn.rows.cost")
    named, missing = set(), []
    for path in sorted((ROOT / "jaxnn").rglob("*.py")):
        for line, text in string_constants(path):
            for dotted in re.findall(r"\bjaxnn(?:\.[A-Za-z_]\w*)+", text):
                named.add(dotted)
                if not resolves(dotted):
                    missing.append(f"{path.relative_to(ROOT)}:{line}: {dotted}")
    assert {"jaxnn.rows.clipped_mean_grads", "jaxnn.rows.cost", "jaxnn.from_flax"} <= named
    assert not missing, missing


TWINS = {
    "jaxnn.rows.clipped_mean_grads": lambda p, X, Y, net: jaxnn.clipped_mean_grads(p, X, Y, net, 1),
    "jaxnn.rows.per_example_grads": lambda p, X, Y, net: jaxnn.per_example_grads(p, X, Y, net),
    "jaxnn.rows.predict": lambda p, X, Y, net: jaxnn.predict(p, X, net),
    "jaxnn.rows.cost_with_hand_gradients": lambda p, X, Y, net: jaxnn.cost_with_hand_gradients(net)(
        p, X, Y
    ),
    "jaxnn.per_example_grad_norms": lambda p, X, Y, net: rows.per_example_grad_norms(
        p, X.T, Y, net
    ),
}


@pytest.mark.parametrize(("twin", "call"), TWINS.items())
def test_a_transposed_input_names_the_other_layouts_function(twin, call):
    net, params, X, Y = problem("softmax+ce")
    with pytest.raises(ValueError, match=rf"so transpose it, or call {re.escape(twin)}, which"):
        call(params, X.T, Y.T, net)
    assert resolves(twin)


# --- 3. one example, and jax.vmap over examples ---------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "layout", "dtype", "rtol"), cases(["columns", "rows"], TOLERANCES, every=5)
)
def test_vmap_over_single_examples_equals_the_batch(name, layout, dtype, rtol):
    """One example is a vector x with a vector y (n_L,) or, for softmax with
    cross-entropy, a scalar integer label: jax.vmap of cost, backprop, predict and the
    block over examples equals the batch functions and the per-example gradients."""
    net, params, X, Y = problem(name, dtype)
    if net.loss == "cross_entropy":
        targets = jnp.argmax(Y, axis=0)  # (m,) labels: each example's is a scalar
    else:
        targets = Y.T  # (m, n_L): each example's is a vector
    mod = jaxnn if layout == "columns" else rows
    block = mod.network_with_hand_gradients(net)
    hand_cost = mod.cost_with_hand_gradients(net)
    each = lambda f: jax.vmap(f, in_axes=(None, 0, 0))

    def everything(params, Xr, T):  # Xr: (m, n_x), one example per row
        return {
            "cost": each(lambda p, x, t: mod.cost(p, x, t, net))(params, Xr, T),
            "grads": each(lambda p, x, t: mod.backprop(p, x, t, net))(params, Xr, T),
            "hand": each(jax.grad(hand_cost))(params, Xr, T),
            "value": each(lambda p, x, t: mod.value_and_backprop(p, x, t, net)[0])(params, Xr, T),
            "predict": jax.vmap(lambda x: mod.predict(params, x, net))(Xr),
            "block": jax.vmap(lambda x: block(params, x))(Xr),
            "block_grads": each(lambda p, x, t: jax.grad(lambda q: jnp.sum(block(q, x) ** 2))(p))(
                params, Xr, T
            ),
            "block_autodiff": each(
                lambda p, x, t: jax.grad(lambda q: jnp.sum(mod.predict(q, x, net) ** 2))(p)
            )(params, Xr, T),
            "per_example": jaxnn.per_example_grads(params, Xr.T, Y, net),
            "batch_cost": jaxnn.cost(params, Xr.T, Y, net),
            "batch_predict": jaxnn.predict(params, Xr.T, net),
        }

    got = fast_jit(everything)(params, X.T, targets)
    assert got["cost"].shape == (M,)
    np.testing.assert_allclose(jnp.mean(got["cost"]), got["batch_cost"], rtol=rtol)
    np.testing.assert_allclose(got["value"], got["cost"], rtol=rtol)
    assert_trees_close(got["grads"], got["per_example"], rtol, "vmap(backprop)")
    assert_trees_close(got["hand"], got["per_example"], rtol, "vmap(grad(hand cost))")
    np.testing.assert_allclose(got["predict"], got["batch_predict"].T, rtol=rtol)
    np.testing.assert_allclose(got["block"], got["batch_predict"].T, rtol=rtol)
    assert_trees_close(got["block_grads"], got["block_autodiff"], rtol, "vmap(grad(block))")


@pytest.mark.slow
def test_one_example_with_a_scalar_label_or_target():
    net, params, X, Y = problem("softmax+ce")
    label = int(np.argmax(Y[:, 2]))
    labels = (label, np.int32(label), jnp.asarray(label))
    # n_L = 1: a scalar target is the one output's target
    net1 = jaxnn.Network((5, 4, 1), ("tanh", "sigmoid"), "binary_cross_entropy")
    targets = (1.0, 1, jnp.float32(1.0))

    def results(params, key, X, Y):  # one program; the labels and targets as given
        p1 = jaxnn.init_params(key, net1, method="pytorch")
        x, x0, ones = X[:, 2], X[:, 0], jnp.ones((1, 1))
        return {
            "batch": jaxnn.cost(params, X[:, 2:3], Y[:, 2:3], net),
            "labels": [
                (jaxnn.cost(params, x, y, net), rows.cost(params, x, y, net)) for y in labels
            ],
            "batch1": jaxnn.cost(p1, x0[:, None], ones, net1),
            "grads1": jax.grad(jaxnn.cost)(p1, x0[:, None], ones, net1),
            "targets": [
                (jaxnn.cost(p1, x0, y, net1), jaxnn.backprop(p1, x0, y, net1)) for y in targets
            ],
        }

    got = fast_jit(results)(params, jax.random.key(0), X, Y)
    for i, (columns, rows_cost) in enumerate(got["labels"]):
        np.testing.assert_allclose(columns, got["batch"], err_msg=repr(labels[i]))
        np.testing.assert_allclose(rows_cost, got["batch"], err_msg=repr(labels[i]))
    for y, (cost, grads) in zip(targets, got["targets"], strict=True):
        np.testing.assert_allclose(cost, got["batch1"], err_msg=repr(y))
        assert_trees_close(grads, got["grads1"], 1e-10, repr(y))
    with pytest.raises(ValueError, match=r"Y \(class label\) must be from 0 to 3 .* label 4"):
        jaxnn.cost(params, X[:, 2], 4, net)
    with pytest.raises(ValueError, match=r"Y has shape \(\) and dtype float64: one example's"):
        jaxnn.cost(params, X[:, 2], 1.0, net)  # a float is no class label
    net2, params2, X2, _ = problem("linear+mse")
    with pytest.raises(ValueError, match=r"one example's target is a vector \(2,\) \(n_L\)"):
        jaxnn.cost(params2, X2[:, 0], 0.5, net2)  # n_L = 2: no scalar target


# --- 5. a Network without a loss ------------------------------------------------------


def test_a_network_without_a_loss_is_a_block():
    net = jaxnn.Network((5, 7, 4), ("tanh", "softmax"))
    assert net.loss is None and net == jaxnn.Network((5, 7, 4), ("tanh", "softmax"), None)
    _, params, X, Y = problem("softmax+ce")
    block = jaxnn.network_with_hand_gradients(net)
    loss = lambda f: lambda p: jnp.sum(jnp.log(f(p)) * Y)

    def results(params, X):  # one program
        return {
            "block": (block(params, X), jax.grad(loss(lambda p: block(p, X)))(params)),
            "predict": (
                jaxnn.predict(params, X, net),
                jax.grad(loss(lambda p: jaxnn.predict(p, X, net)))(params),
            ),
        }

    got = fast_jit(results)(params, X)
    np.testing.assert_array_equal(got["block"][0], got["predict"][0])
    assert_trees_close(got["block"][1], got["predict"][1], 1e-10)
    message = r"this network has no loss \(loss=None.*give jaxnn.Network a loss, one of"
    for fn in (jaxnn.cost, jaxnn.backprop, jaxnn.per_example_grads):
        with pytest.raises(ValueError, match=message):
            fn(params, X, Y, net)
    with pytest.raises(ValueError, match=message):
        rows.value_and_backprop(params, X.T, Y.T, net)
    with pytest.raises(ValueError, match=message):
        jax.grad(jaxnn.cost_with_hand_gradients(net))(params, X, Y)


@pytest.mark.parametrize("module", [jaxnn, rows])
def test_the_hand_gradient_functions_have_docstrings(module):
    net = NETS["softmax+ce"]
    for f in (module.network_with_hand_gradients(net), module.cost_with_hand_gradients(net)):
        assert f.__doc__ and "BP" in f.__doc__, f.__doc__


# --- 6. what static analysis and dir() see --------------------------------------------


def test_dir_of_rows_is_its_public_names():
    assert dir(rows) == sorted(rows.__all__)
    assert not {"jax", "jnp", "np", "check_inputs"} & set(dir(rows))
    assert {"per_example_grads", "per_example_grad_norms", "clipped_mean_grads"} <= set(dir(rows))


def test_the_type_stub_lists_every_public_name_from_where_it_lives():
    """``jaxnn/__init__.pyi`` names each of ``jaxnn.__all__``, the lazy ones included,
    with an explicit re-export from the module it comes from at run time."""
    tree = ast.parse((ROOT / "jaxnn" / "__init__.pyi").read_text())
    imported = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                assert alias.asname == alias.name, f"{alias.name}: not an explicit re-export"
                imported[alias.name] = node.module
    assert sorted(imported) == sorted(jaxnn.__all__)
    for name, module in imported.items():
        source = importlib.import_module(module)
        assert getattr(jaxnn, name) is getattr(source, name), (name, module)


# --- 7. labels checked under jit, on request ------------------------------------------


@pytest.mark.slow
def test_checked_names_an_out_of_range_label_under_jit():
    net, params, X, _ = problem("softmax+ce")
    labels = jnp.asarray([0, 1, 2, 3, 7, 1, 0, -1, 2])
    unchecked = jax.jit(jaxnn.cost)
    assert np.isnan(unchecked(params, X, labels, net))  # NaN only
    error, value = jax.jit(jaxnn.checked(jaxnn.cost))(params, X, labels, net)
    assert np.isnan(value)
    message = error.get()
    assert message is not None and message.startswith(
        "Y (class labels) must be from 0 to 3 (4 classes); the first that is not is "
        "label 7 (example 4), 2 in all"
    ), message
    with pytest.raises(checkify.JaxRuntimeError, match="label 7 \\(example 4\\)"):
        error.throw()
    # through the hand gradients, the rows and vmap over single labels
    error, _ = jax.jit(jaxnn.checked(jax.grad(rows.cost_with_hand_gradients(net))))(
        params, X.T, labels
    )
    assert "label 7 (example 4)" in error.get()
    one = lambda p, x, y: jaxnn.backprop(p, x, y, net)
    error, _ = jax.jit(jaxnn.checked(jax.vmap(one, (None, 1, 0))))(params, X, labels)
    assert "Y (class label) must be from 0 to 3" in error.get()
    good = labels % 4
    error, value = jax.jit(jaxnn.checked(jaxnn.cost))(params, X, good, net)
    assert error.get() is None
    np.testing.assert_allclose(value, unchecked(params, X, good, net), rtol=1e-12)
