"""cost_with_hand_gradients: jaxnn's BP1-BP4 as the reverse-mode derivative of jaxnn.cost.

Each test compares against an independent reference: ``jax.grad(jaxnn.cost)``,
JAX's own differentiation of the forward pass, for the parameter gradients, the
input and target cotangents and second derivatives. (``jaxnn.backprop`` is no
reference here: the custom VJP runs the same ``backward``, so the two would
share any error.) Most run under
``jax.jit`` (``fast_jit``: XLA's CPU backend optimisations off): one compilation
is quicker than dispatching every small op. The hand gradients and their
references for each network of ``NETS`` are compiled once for the module (the
``compiled`` fixture) and shared by every test that evaluates them.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from jaxnn.hand_gradients import cost_with_hand_gradients
from tests.helpers import assert_trees_close, fast_jit

NETS = {
    "softmax+ce": jaxnn.Network((4, 5, 3), ("tanh", "softmax"), "cross_entropy"),
    "sigmoid+bce": jaxnn.Network(
        (4, 6, 5, 3), ("relu", "leaky_relu", "sigmoid"), "binary_cross_entropy"
    ),
    "linear+mse": jaxnn.Network((4, 5, 2), ("sigmoid", "linear"), "mse"),
    "softmax+mse": jaxnn.Network((4, 5, 3), ("tanh", "softmax"), "mse"),
}
M = 6


def problem(name, seed=0, dtype=jnp.float64):
    """Parameters with non-zero biases, inputs, and targets suited to the loss."""
    net = NETS[name]
    rng = np.random.default_rng(seed)
    params = [
        {
            "W": jnp.asarray(rng.normal(0, 1 / np.sqrt(n_in), (n_out, n_in)), dtype),
            "b": jnp.asarray(rng.normal(0, 0.5, (n_out, 1)), dtype),
        }
        for n_in, n_out in zip(net.sizes[:-1], net.sizes[1:], strict=True)
    ]
    X = rng.normal(size=(net.sizes[0], M))
    n = net.sizes[-1]
    if net.loss == "cross_entropy":
        Y = rng.dirichlet(np.ones(n), size=M).T  # soft labels: sum_k y_k = 1
    elif net.loss == "binary_cross_entropy":
        Y = rng.uniform(size=(n, M))
    else:
        Y = rng.normal(size=(n, M))
    return net, params, jnp.asarray(X, dtype), jnp.asarray(Y, dtype)


def _compile(name):
    """``(hand, reference)`` for ``NETS[name]``, each ``f(params, X, Y)`` under ``fast_jit``.

    hand: ``jax.value_and_grad`` of ``cost_with_hand_gradients`` in all three
    arguments, fused and BP1 (``[(value, (grads, dX, dY))] * 2``).
    reference: ``jax.value_and_grad(jaxnn.cost)`` in all three arguments
    (``(value, (grads, dX, dY))``), autodiff of the forward pass.
    """
    net = NETS[name]
    costs = [cost_with_hand_gradients(net, fused=fused) for fused in (True, False)]
    hand = lambda *a: [jax.value_and_grad(c, argnums=(0, 1, 2))(*a) for c in costs]
    reference = lambda params, X, Y: jax.value_and_grad(jaxnn.cost, argnums=(0, 1, 2))(
        params, X, Y, net
    )
    return fast_jit(hand), fast_jit(reference)


@pytest.fixture(scope="module")
def compiled():
    """``compiled(name)``: ``_compile(name)``, compiled once for the module."""
    return functools.cache(_compile)


def autodiff_grads(compiled, name, params, X, Y):
    """``jax.grad(jaxnn.cost)(params, X, Y, NETS[name])``, from the module's compiled reference."""
    _, (grads, _, _) = compiled(name)[1](params, X, Y)
    return grads


@pytest.mark.slow
@pytest.mark.parametrize("name", NETS)
def test_gradients_and_input_cotangents_match_autodiff(name, compiled):
    """Under jax.jit, fused or not: the cost, dC/dparams, dC/dX and dC/dY equal autodiff's."""
    _, params, X, Y = problem(name)
    hand, reference = compiled(name)
    (v_fused, (g_fused, dX, dY)), (v_bp1, (g_bp1, *inputs_bp1)) = hand(params, X, Y)
    auto_value, (auto_grads, auto_dX, auto_dY) = reference(params, X, Y)
    for value in (v_fused, v_bp1):
        assert abs(value - auto_value) <= 1e-14 * abs(auto_value)
    assert_trees_close(g_fused, auto_grads, 1e-12, "fused")
    assert_trees_close(g_bp1, auto_grads, 1e-12, "BP1")
    assert_trees_close([dX, dY], [auto_dX, auto_dY], 1e-12)
    assert_trees_close(inputs_bp1, [auto_dX, auto_dY], 1e-12)


@pytest.mark.slow
def test_grad_runs_the_hand_backward(monkeypatch):
    """The VJP is jaxnn's own ``backward`` (BP1-BP4), not autodiff of the forward pass: it
    is called once per gradient, with the network and the ``fused`` setting given."""
    from jaxnn import hand_gradients

    calls = []
    real = hand_gradients.backward

    def spy(*args, **kwargs):
        calls.append(kwargs.get("fused"))
        return real(*args, **kwargs)

    monkeypatch.setattr(hand_gradients, "backward", spy)
    net, params, X, Y = problem("softmax+ce")
    for fused in (True, False):
        jax.grad(cost_with_hand_gradients(net, fused=fused))(params, X, Y)
    assert calls == [True, False]


def test_target_cotangent_is_finite_at_saturation(compiled):
    """dC/dY of BCE is -Z/m: finite at |z| = 2000, where log(a) - log(1 - a) is inf."""
    _, params, X, Y = problem("sigmoid+bce")
    params[-1] = {"W": params[-1]["W"] * 4000, "b": params[-1]["b"] * 4000}
    hand, reference = compiled("sigmoid+bce")
    (_, (_, _, dY)), _ = hand(params, X, Y)  # fused, the default
    assert np.all(np.isfinite(dY)) and np.max(np.abs(dY)) > 100
    _, (_, _, auto_dY) = reference(params, X, Y)
    assert_trees_close(dY, auto_dY, 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["softmax+ce", "sigmoid+bce"])
def test_vmap_over_examples(name, compiled):
    """in_axes=1 gives one column, a vector of length n_x: one example."""
    net, params, X, Y = problem(name)
    cost = cost_with_hand_gradients(net)
    per_example = jax.vmap(
        jax.value_and_grad(cost, argnums=(0, 1)), in_axes=(None, 1, 1), out_axes=(0, (0, 1))
    )
    values, (grads, dX) = fast_jit(per_example)(params, X, Y)
    each = fast_jit(
        lambda p, X, Y: jnp.stack([jaxnn.cost(p, X[:, i], Y[:, i], net) for i in range(M)])
    )
    assert_trees_close(values, each(params, X, Y), 1e-13)
    _, (batch_grads, batch_dX, _) = compiled(name)[1](params, X, Y)  # jax.grad(jaxnn.cost)
    # The cost is the mean over examples, so its gradient is the mean of theirs.
    assert_trees_close(jax.tree.map(lambda g: g.mean(axis=0), grads), batch_grads, 1e-12)
    assert_trees_close(dX / M, batch_dX, 1e-12)


def test_vmap_over_parameter_sets(compiled):
    net, _, X, Y = problem("sigmoid+bce")
    sets = [problem("sigmoid+bce", seed)[1] for seed in range(3)]
    stacked = jax.tree.map(lambda *leaves: jnp.stack(leaves), *sets)
    grad = jax.vmap(jax.grad(cost_with_hand_gradients(net)), in_axes=(0, None, None))
    grads = fast_jit(grad)(stacked, X, Y)
    expected = jax.tree.map(
        lambda *leaves: jnp.stack(leaves),
        *[autodiff_grads(compiled, "sigmoid+bce", p, X, Y) for p in sets],
    )
    assert_trees_close(grads, expected, 1e-12)


def test_optax_adam_loop_matches_autodiff():
    net, params, X, Y = problem("softmax+ce")
    cost = cost_with_hand_gradients(net)
    optimizer = optax.adam(1e-2)

    def run(grad_fn):
        def step(carry, _):
            p, state = carry
            updates, state = optimizer.update(grad_fn(p), state, p)
            return (optax.apply_updates(p, updates), state), None

        (p, _), _ = jax.lax.scan(step, (params, optimizer.init(params)), length=5)
        return p

    via_custom_vjp = fast_jit(run, static_argnums=0)(lambda p: jax.grad(cost)(p, X, Y))
    via_autodiff = fast_jit(run, static_argnums=0)(lambda p: jax.grad(jaxnn.cost)(p, X, Y, net))
    assert_trees_close(via_custom_vjp, via_autodiff, 1e-10)
    assert not np.allclose(via_custom_vjp[0]["W"], params[0]["W"])  # it did move


@pytest.mark.slow
def test_cotangent_scales_every_gradient(compiled):
    """Eagerly, without jit: jax.vjp with cotangent 3 gives 3 times every gradient."""
    net, params, X, Y = problem("linear+mse")
    value, vjp = jax.vjp(cost_with_hand_gradients(net), params, X, Y)
    _, expected = compiled("linear+mse")[1](params, X, Y)  # jax.grad(jaxnn.cost), jitted
    assert value == jaxnn.cost(params, X, Y, net)
    assert_trees_close(vjp(jnp.asarray(3.0)), jax.tree.map(lambda g: 3 * g, expected), 1e-12)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["softmax+ce", "linear+mse"])
def test_hessian_is_forward_over_the_hand_backward(name):
    """jax.hessian = jacfwd(jacrev(f)): forward mode runs over the backward's own jnp ops."""
    net, params, X, Y = problem(name)
    hand = fast_jit(jax.hessian(cost_with_hand_gradients(net)))(params, X, Y)
    auto = fast_jit(jax.hessian(jaxnn.cost), static_argnums=3)(params, X, Y, net)
    assert_trees_close(hand, auto, 1e-10)


def test_reverse_over_reverse():
    net, params, X, Y = problem("softmax+ce")
    cost = cost_with_hand_gradients(net, fused=False)

    def grad_norm2(grad_fn):
        return lambda p: sum(jnp.sum(g**2) for g in jax.tree.leaves(grad_fn(p)))

    hand = fast_jit(jax.grad(grad_norm2(lambda p: jax.grad(cost)(p, X, Y))))(params)
    auto = fast_jit(jax.grad(grad_norm2(lambda p: jax.grad(jaxnn.cost)(p, X, Y, net))))(params)
    assert_trees_close(hand, auto, 1e-10)


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["columns", "rows"])
def test_forward_mode_raises_a_type_error_that_says_what_to_use(layout):
    """jax.jvp and jax.jacfwd through the hand-gradient functions (cost and block, both
    layouts) raise a TypeError naming the function and the plain-JAX alternatives."""
    net, params, X, Y = problem("softmax+ce")
    module = jaxnn.rows if layout == "rows" else jaxnn
    if layout == "rows":
        X, Y = X.T, Y.T
    cost = module.cost_with_hand_gradients(net)
    block = module.network_with_hand_gradients(net)
    what = "jaxnn.rows." if layout == "rows" else "jaxnn."
    for fn, name, args in [
        (cost, "cost_with_hand_gradients", (params, X, Y)),
        (block, "network_with_hand_gradients", (params, X)),
    ]:
        words = f"{what}{name}\\(net\\) has a hand-written reverse-mode derivative only"
        with pytest.raises(TypeError, match=words) as info:
            jax.jit(jax.jacfwd(fn))(*args)
        assert "jaxnn.cost, jaxnn.forward or jaxnn.predict" in str(info.value)
        with pytest.raises(TypeError, match=words):
            jax.jit(lambda *a, fn=fn: jax.jvp(fn, a, a))(*args)
    # What the message recommends works: forward mode through the plain cost.
    plain = jaxnn.rows.cost if layout == "rows" else jaxnn.cost
    tangent = jax.jvp(lambda x: plain(params, x, Y, net), (X,), (jnp.ones_like(X),))[1]
    expected = jnp.sum(jax.grad(cost, argnums=1)(params, X, Y))
    np.testing.assert_allclose(tangent, expected, rtol=1e-10)


@pytest.mark.slow
def test_float32_gradients_stay_float32():
    net, params, X, Y = problem("sigmoid+bce", dtype=jnp.float32)
    grad = fast_jit(jax.grad(cost_with_hand_gradients(net), argnums=(0, 1, 2)))
    grads, dX, dY = grad(params, X, Y)
    assert {g.dtype for g in jax.tree.leaves(grads)} == {jnp.dtype(jnp.float32)}
    assert dX.dtype == dY.dtype == jnp.float32
    # float32 against float64 autodiff at the same point: float32 rounding, stated as 1e-5.
    up = lambda tree: jax.tree.map(lambda x: x.astype(jnp.float64), tree)
    auto = fast_jit(jax.grad(jaxnn.cost, argnums=(0, 1, 2)), static_argnums=3)
    assert_trees_close(up((grads, dX, dY)), auto(up(params), up(X), up(Y), net), 1e-5)


@pytest.mark.slow
def test_integer_targets_get_a_zero_cotangent(compiled):
    net, params, X, _ = problem("softmax+ce")
    Y = np.eye(3, dtype=np.int32)[:, np.arange(M) % 3]
    grads = fast_jit(jax.grad(cost_with_hand_gradients(net)))(params, X, jnp.asarray(Y))
    expected = autodiff_grads(compiled, "softmax+ce", params, X, jnp.asarray(Y, jnp.float64))
    assert_trees_close(grads, expected, 1e-12)
    # The targets' own cotangent: integers have no tangent space, so JAX's float0 zero.
    _, pullback = jax.vjp(cost_with_hand_gradients(net), params, X, jnp.asarray(Y))
    dY = pullback(1.0)[2]
    assert dY.dtype == jax.dtypes.float0 and dY.shape == Y.shape


def test_tuple_of_layers_gets_a_tuple_of_gradients(compiled):
    net, params, X, Y = problem("linear+mse")
    grads = fast_jit(jax.grad(cost_with_hand_gradients(net)))(tuple(params), X, Y)
    assert isinstance(grads, tuple)
    assert_trees_close(list(grads), autodiff_grads(compiled, "linear+mse", params, X, Y), 1e-12)


def test_bad_inputs_raise_before_any_math():
    net, params, X, Y = problem("softmax+ce")
    with pytest.raises(ValueError, match="transpose"):
        jax.grad(cost_with_hand_gradients(net))(params, X.T, Y)


def test_exported_at_top_level():
    assert jaxnn.cost_with_hand_gradients is cost_with_hand_gradients
