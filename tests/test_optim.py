"""Tests of jaxnn.optim: the seed's equations, optax equivalence, pytrees, jit, errors.

One shared table of optimizer cases runs through generic checks. References are
independent of jaxnn.optim: a NumPy transcription of the seed's equations (for the
first steps) and optax's own optimizers (for 1000-step training trajectories).
"""

import doctest
import functools
import inspect
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxnn
from jaxnn import optim
from tests.helpers import assert_trees_close

# A schedule that changes at every step, and a piecewise one with kinks at steps 3 and 5.
EXP_DECAY = optax.exponential_decay(0.05, transition_steps=1, decay_rate=0.998)


def PIECEWISE(count):
    return jnp.where(count < 2, 0.01, jnp.where(count < 4, 0.03, 0.002))


CASES = [
    pytest.param("sgd", {"learning_rate": 0.5}, id="sgd"),
    pytest.param("sgd", {"learning_rate": EXP_DECAY}, id="sgd-exp_decay"),
    pytest.param("momentum", {"learning_rate": 0.5}, id="momentum"),
    pytest.param("momentum", {"learning_rate": 0.2, "beta": 0.5}, id="momentum-beta.5"),
    pytest.param("momentum", {"learning_rate": PIECEWISE, "beta": 0.99}, id="momentum-piecewise"),
    pytest.param("rmsprop", {"learning_rate": 0.01}, id="rmsprop"),
    pytest.param("rmsprop", {"learning_rate": 0.003, "decay": 0.5, "eps": 1e-4}, id="rmsprop-d.5"),
    pytest.param("rmsprop", {"learning_rate": PIECEWISE, "decay": 0.99}, id="rmsprop-piecewise"),
    pytest.param("adam", {"learning_rate": 0.01}, id="adam"),
    pytest.param(
        "adam", {"learning_rate": 0.03, "b1": 0.5, "b2": 0.9, "eps": 1e-6}, id="adam-b.5-b.9"
    ),
    pytest.param("adam", {"learning_rate": EXP_DECAY, "b1": 0.0, "b2": 0.0}, id="adam-b0-exp"),
]
NAMES = ["sgd", "momentum", "rmsprop", "adam"]

# The seed's defaults ("HyperParameter Advised Value"), written here independently.
DEFAULTS = {
    "sgd": {},
    "momentum": {"beta": 0.9},
    "rmsprop": {"decay": 0.9, "eps": 1e-8},
    "adam": {"b1": 0.9, "b2": 0.999, "eps": 1e-8},
}


# --- references --------------------------------------------------------------------------


def _quotient(num, den):
    """num / den, 0 where den == 0: the documented meaning of the seed's 0/0 at eps = 0."""
    return np.divide(num, den, out=np.zeros_like(num), where=den != 0)


def schedule_value(learning_rate, count):
    """a after ``count`` updates; a schedule gets the int32 count, as optax gives it (an
    optax schedule may round to float32 for an int32 count, even with x64 on)."""
    if callable(learning_rate):
        return float(learning_rate(jnp.asarray(count, jnp.int32)))
    return learning_rate


def numpy_seed(name, kwargs, params, grads_seq):
    """The seed's equations in float64 NumPy, entry by entry; params after each step."""
    hp = {**DEFAULTS[name], **kwargs}
    leaves, treedef = jax.tree_util.tree_flatten(params)
    W = [np.asarray(w, np.float64) for w in leaves]
    V = [np.zeros_like(w) for w in W]
    S = [np.zeros_like(w) for w in W]
    out = []
    for t, grads in enumerate(grads_seq, start=1):  # t counts updates from 1
        a = schedule_value(hp["learning_rate"], t - 1)
        for i, dW in enumerate(jax.tree_util.tree_leaves(grads)):
            dW = np.asarray(dW, np.float64)
            if name == "sgd":
                W[i] = W[i] - a * dW
            elif name == "momentum":
                V[i] = hp["beta"] * V[i] + (1 - hp["beta"]) * dW
                W[i] = W[i] - a * V[i]
            elif name == "rmsprop":
                S[i] = hp["decay"] * S[i] + (1 - hp["decay"]) * dW**2
                W[i] = W[i] - a * _quotient(dW, np.sqrt(S[i]) + hp["eps"])
            else:
                b1, b2 = hp["b1"], hp["b2"]
                V[i] = b1 * V[i] + (1 - b1) * dW
                S[i] = b2 * S[i] + (1 - b2) * dW**2
                Vc, Sc = V[i] / (1 - b1**t), S[i] / (1 - b2**t)
                W[i] = W[i] - a * _quotient(Vc, np.sqrt(Sc) + hp["eps"])
        out.append(jax.tree_util.tree_unflatten(treedef, [w.copy() for w in W]))
    return out


def random_tree(rng, dtype=np.float64):
    """Network-shaped params: a list of {"W", "b"} dicts."""
    return [
        {"W": rng.normal(size=(3, 4)).astype(dtype), "b": rng.normal(size=(3, 1)).astype(dtype)},
        {"W": rng.normal(size=(2, 3)).astype(dtype), "b": rng.normal(size=(2, 1)).astype(dtype)},
    ]


def random_grads(rng, like, steps):
    """Gradients of magnitudes 1e-3 to 10, so eps and the squares both matter."""
    return [
        jax.tree.map(
            lambda p: (rng.normal(size=p.shape) * 10 ** rng.uniform(-3, 1, p.shape)).astype(
                p.dtype
            ),
            like,
        )
        for _ in range(steps)
    ]


def run_steps(opt, params, grads_seq, step=None):
    """Apply ``opt`` to a fixed gradient sequence; params and states after each step."""
    step = step or opt.update
    state = opt.init(params)
    params_seq, states = [], []
    for grads in grads_seq:
        updates, state = step(grads, state)
        params = optax.apply_updates(params, updates)
        params_seq.append(params)
        states.append(state)
    return params_seq, states


@functools.cache
def jitted_steps(seed, make_tree, steps=3):
    """Every case of CASES applied to the same params and ``steps`` gradients (NumPy
    ``default_rng(seed)``: ``make_tree``, then ``random_grads``), all cases' updates in
    one jitted program (one compilation for all). Returns the params, the gradients, and
    per case id the params and states after each step (as ``run_steps``)."""
    rng = np.random.default_rng(seed)
    params = jax.tree.map(jnp.asarray, make_tree(rng))
    grads_seq = random_grads(rng, params, steps)
    opts = {case.id: optim.OPTIMIZERS[case.values[0]](**case.values[1]) for case in CASES}

    @jax.jit
    def run(params, grads_seq):
        return {i: run_steps(opt, params, grads_seq) for i, opt in opts.items()}

    return params, grads_seq, jax.device_get(run(params, grads_seq))


# --- training a jaxnn network -------------------------------------------------------------

NET = jaxnn.Network(sizes=(4, 8, 3), activations=("tanh", "softmax"), loss="cross_entropy")
M = 32


def network_problem(dtype):
    """Params and data (X: (n_x, m), Y one-hot (n_L, m)) cast to ``dtype``."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(4, M))
    Y = np.eye(3)[rng.integers(0, 3, M)].T
    params = jaxnn.init_params(jax.random.key(0), NET)
    cast = lambda x: jnp.asarray(x, dtype)
    return jax.tree.map(cast, params), cast(X), cast(Y)


def train(runs, dtype, steps=1000):
    """Train one copy of the network per run, side by side in one jitted lax.scan (one
    compilation for all). ``runs`` is {key: (optimizer, gradient scale)}; a scale of m
    turns the mean cost's gradients into the summed cost's. Returns the initial params
    and, per run, the params after every step (leaves stacked on axis 0)."""
    params, X, Y = network_problem(dtype)

    def step(carry, _):
        new = {}
        for key, (opt, scale) in runs.items():
            p, s = carry[key]
            grads = jax.tree.map(lambda g, c=scale: c * g, jaxnn.backprop(p, X, Y, NET))
            updates, s = opt.update(grads, s, p)
            new[key] = (optax.apply_updates(p, updates), s)
        return new, {key: p for key, (p, _) in new.items()}

    @jax.jit
    def run(params):
        init = {key: (params, opt.init(params)) for key, (opt, _) in runs.items()}
        return jax.lax.scan(step, init, None, length=steps)[1]

    return params, run(params)


@pytest.fixture(scope="module")
def trajectories():
    """The float64 trajectories the algebraic equivalences below compare, trained side by
    side in one program (one compilation for the three tests)."""
    a, beta = 0.5, 0.9
    clip = lambda opt: optax.chain(optax.clip_by_global_norm(1.0), opt)
    return train(
        {
            "momentum/jaxnn": (optim.momentum(a, beta), 1.0),
            "momentum/optax.sgd": (optax.sgd(a * (1 - beta), momentum=beta), 1.0),
            "nesterov/jaxnn": (optim.momentum(a, beta, nesterov=True), 1.0),
            "nesterov/optax.sgd": (
                optax.sgd(a * (1 - beta), momentum=beta, nesterov=True),
                1.0,
            ),
            "clip/jaxnn": (clip(optim.adam(1e-3)), M),
            "clip/optax": (clip(optim.optax_equivalent("adam", learning_rate=1e-3)), M),
            "clip/unclipped": (optim.adam(1e-3), M),
        },
        jnp.float64,
    )[1]


# --- the contract -------------------------------------------------------------------------


# Keyword-only additions to the contract, with defaults that keep the seed's update.
ADDED = {"momentum": {"nesterov": False}, "adam": {"eps_hat": False}}


def test_signatures_and_defaults_are_the_contract():
    """The issue's names and signatures, with the seed's advised defaults; additions only
    as keyword-only arguments after them."""
    for name in NAMES:
        parameters = inspect.signature(getattr(optim, name)).parameters
        added = ADDED.get(name, {})
        assert list(parameters) == ["learning_rate", *DEFAULTS[name], *added], name
        assert parameters["learning_rate"].default is inspect.Parameter.empty
        defaults = {k: p.default for k, p in list(parameters.items())[1:]}
        assert defaults == {**DEFAULTS[name], **added}
        assert all(parameters[k].kind is inspect.Parameter.KEYWORD_ONLY for k in added)
        assert optim.OPTIMIZERS[name] is getattr(optim, name)
    fields = {"sgd": ("count",), "momentum": ("count", "mu"), "rmsprop": ("count", "nu")}
    for name in NAMES:
        state = optim.OPTIMIZERS[name](0.1).init({"W": jnp.zeros((2, 3))})
        assert state._fields == fields.get(name, ("count", "mu", "nu")), name


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_first_steps_equal_numpy_transcription_of_seed(name, kwargs, request):
    """Six steps (past the piecewise schedule's kinks at steps 3 and 5) vs NumPy."""
    params, grads_seq, runs = jitted_steps(1, random_tree, steps=6)
    got, states = runs[request.node.callspec.id]
    expected = numpy_seed(name, kwargs, params, grads_seq)
    for t, (g, e, s) in enumerate(zip(got, expected, states, strict=True), start=1):
        assert_trees_close(g, e, rtol=1e-13, what=f"{name} step {t}")
        assert s.count == t and s.count.dtype == jnp.int32


@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_first_step_closed_form(name, kwargs):
    """Step 1 from V = S = 0, in closed form: Adam's is -a dW / (|dW| + eps) for any b1, b2."""
    hp = {**DEFAULTS[name], **kwargs}
    a = schedule_value(hp["learning_rate"], 0)
    dW = np.array([[2.0, -0.5, 1e-3, 0.0]])
    first = {
        "sgd": lambda: -a * dW,
        "momentum": lambda: -a * (1 - hp.get("beta", 0)) * dW,
        "rmsprop": lambda: -a * dW / (np.sqrt(1 - hp.get("decay", 0)) * np.abs(dW) + hp["eps"]),
        "adam": lambda: -a * dW / (np.abs(dW) + hp["eps"]),
    }[name]()
    opt = optim.OPTIMIZERS[name](**kwargs)
    updates, _ = opt.update(jnp.asarray(dW), opt.init(jnp.zeros_like(dW)))
    assert_trees_close(updates, first, rtol=1e-15, what=name)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [jnp.float64, jnp.float32])
def test_training_trajectories_equal_optax_equivalents(dtype):
    """1000 steps of training a jaxnn network, every step of every case in CASES
    compared with its optax equivalent (all in one compilation per dtype).

    The two compute the same operations in the same order, so they agree to rounding
    (in practice bit for bit). Tolerances: 1e-12 in float64; 1e-5 in float32, whose
    unit roundoff 6e-8, compounded over 1000 steps of feedback through the network, can
    reach that size wherever the compiler rounds one operation differently.
    """
    runs = {}
    for case in CASES:
        name, kwargs = case.values
        runs[f"{case.id}/jaxnn"] = (optim.OPTIMIZERS[name](**kwargs), 1.0)
        runs[f"{case.id}/optax"] = (optim.optax_equivalent(name, **kwargs), 1.0)
    params, traj = train(runs, dtype)
    rtol = 1e-12 if dtype == jnp.float64 else 1e-5
    for case in CASES:
        ours, theirs = traj[f"{case.id}/jaxnn"], traj[f"{case.id}/optax"]
        assert_trees_close(ours, theirs, rtol=rtol, what=f"{case.id} {dtype.__name__}")
        # The comparison means something only if training moved the params.
        moved = jax.tree.map(lambda p, t: float(jnp.max(jnp.abs(t[-1] - p))), params, ours)
        assert max(jax.tree.leaves(moved)) > 1e-2, case.id


# --- algebraic equivalences ---------------------------------------------------------------


@pytest.mark.slow
def test_momentum_equals_undamped_optax_sgd_with_learning_rate_scaled_by_1_minus_beta(
    trajectories,
):
    """V' = V / (1 - beta) turns (OPT-M1, M2) into V' = beta V' + dW, W -= a (1 - beta) V'.

    The same math with different rounding; training is stable here, so 1000 steps stay
    within 1e-12 (a = 0.5, beta = 0.9: ``trajectories``)."""
    traj = trajectories
    assert_trees_close(
        traj["momentum/jaxnn"], traj["momentum/optax.sgd"], rtol=1e-12, what="momentum"
    )


@pytest.mark.parametrize(("name", "kwargs"), CASES[:2])
def test_momentum_with_beta_0_is_sgd(name, kwargs):
    rng = np.random.default_rng(8)
    params = random_tree(rng)
    grads_seq = random_grads(rng, params, steps=20)
    ours, _ = run_steps(optim.momentum(kwargs["learning_rate"], beta=0.0), params, grads_seq)
    sgd, _ = run_steps(optim.sgd(kwargs["learning_rate"]), params, grads_seq)
    assert_trees_close(ours, sgd, rtol=0.0, what="momentum(beta=0) vs sgd")


@pytest.mark.slow
def test_chain_with_clip_by_global_norm_equals_optax_chain(trajectories):
    """optax.chain(clip_by_global_norm(1), adam(1e-3)) with jaxnn's adam or optax's,
    on the summed cost's gradients, whose global norm is above 1 so the clip acts."""
    params, X, Y = network_problem(jnp.float64)
    grads = jaxnn.backprop(params, X, Y, NET)
    assert M * math.sqrt(sum(float(jnp.sum(g**2)) for g in jax.tree.leaves(grads))) > 1.0
    traj = trajectories
    assert_trees_close(traj["clip/jaxnn"], traj["clip/optax"], rtol=1e-12, what="clipped adam")
    # The clipping acted: without it the trajectory differs.
    assert not np.allclose(
        traj["clip/jaxnn"][0]["W"][4], traj["clip/unclipped"][0]["W"][4], rtol=1e-6
    )


# --- learning-rate schedules --------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_schedule_is_called_with_updates_done_before(name):
    """A schedule that is non-zero only at count 1 moves the params at the 2nd update only."""
    schedule = lambda count: jnp.where(count == 1, 0.1, 0.0)
    rng = np.random.default_rng(2)
    params = random_tree(rng)
    opt = optim.OPTIMIZERS[name](schedule)
    state = opt.init(params)
    moved = []
    for grads in random_grads(rng, params, 3):
        updates, state = opt.update(grads, state)
        moved.append(any(bool(jnp.any(u != 0)) for u in jax.tree.leaves(updates)))
    assert moved == [False, True, False]


# --- zero gradients, a dead unit, and eps = 0 ---------------------------------------------


def dead_unit_grads(rng, params, steps=12):
    """Unit 0 of layer 1 is dead (its W row and b entry get 0 at every step); layer 2's
    b gets 0 at steps 3 and 4 only."""
    grads_seq = random_grads(rng, params, steps)
    for t, grads in enumerate(grads_seq, start=1):
        grads[0]["W"][0] = 0.0
        grads[0]["b"][0] = 0.0
        if t in (3, 4):
            grads[1]["b"][:] = 0.0
    return grads_seq


@pytest.mark.slow
@pytest.mark.parametrize("eps", [1e-8, 0.0])
@pytest.mark.parametrize("name", ["rmsprop", "adam"])
def test_zero_gradients_give_no_nan(name, eps):
    """S = 0 on the dead unit: with eps > 0 the step is 0 / eps = 0; with eps = 0 the
    seed's formula is 0/0, which jaxnn defines as 0 (optax gives NaN there)."""
    rng = np.random.default_rng(3)
    params = random_tree(rng)
    grads_seq = dead_unit_grads(rng, params)
    kwargs = {"learning_rate": 0.01, "eps": eps}
    got, _ = run_steps(optim.OPTIMIZERS[name](**kwargs), params, grads_seq)
    expected = numpy_seed(name, kwargs, params, grads_seq)
    for t, (g, e) in enumerate(zip(got, expected, strict=True), start=1):
        assert_trees_close(g, e, rtol=1e-13, what=f"{name} eps={eps} step {t}")  # finite too
    assert np.array_equal(got[-1][0]["W"][0], params[0]["W"][0])  # the dead unit stays put
    assert np.array_equal(got[-1][0]["b"][0], params[0]["b"][0])
    if eps > 0:
        theirs, _ = run_steps(optim.optax_equivalent(name, **kwargs), params, grads_seq)
        assert_trees_close(got, theirs, rtol=1e-13, what=f"{name} vs optax")
    else:  # why optax_equivalent refuses eps = 0: optax's step there is 0/0 = NaN
        if name == "rmsprop":
            ref = optax.rmsprop(0.01, eps=0.0, eps_in_sqrt=False)
        else:
            ref = optax.adam(0.01, eps=0.0)
        theirs, _ = run_steps(ref, params, grads_seq[:1])
        assert np.all(np.isnan(theirs[0][0]["W"][0]))
        with pytest.raises(ValueError, match=r"eps=0\): no exact optax equivalent"):
            optim.optax_equivalent(name, **kwargs)


# --- pytrees, dtypes, jit -----------------------------------------------------------------


def mixed_tree(rng):
    """A dict of a list of a tuple, with float32 and float64 leaves of several shapes."""
    f32, f64 = np.float32, np.float64
    return {
        "layers": [
            (rng.normal(size=(3, 2)).astype(f32), rng.normal(size=(3, 1)).astype(f64)),
            {"scale": np.asarray(rng.normal(), f64)},
        ],
        "extra": (rng.normal(size=(5,)).astype(f32),),
    }


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_nested_pytree_with_mixed_dtypes(name, kwargs, request):
    params, grads_seq, runs = jitted_steps(4, mixed_tree)
    opt = optim.OPTIMIZERS[name](**kwargs)
    state = opt.init(params)
    assert state.count.dtype == jnp.int32 and state.count.shape == ()
    for field in ("mu", "nu"):
        if hasattr(state, field):
            dtypes = jax.tree.map(lambda s: s.dtype, getattr(state, field))
            assert dtypes == jax.tree.map(lambda p: p.dtype, params), field
    got, states = runs[request.node.callspec.id]  # updates under jit
    expected = numpy_seed(name, kwargs, params, grads_seq)[-1]
    for (path, g), e, p in zip(
        jax.tree_util.tree_leaves_with_path(got[-1]),
        jax.tree.leaves(expected),
        jax.tree.leaves(params),
        strict=True,
    ):
        assert g.dtype == p.dtype, jax.tree_util.keystr(path)
        rtol = 1e-13 if p.dtype == jnp.float64 else 1e-5  # float32: a few roundings of 6e-8
        err = float(np.max(np.abs(np.float64(g) - e)) / np.max(np.abs(e)))
        assert err <= rtol, f"{jax.tree_util.keystr(path)}: {err:.2e}"
    assert jax.tree.structure(states[-1]) == jax.tree.structure(state)
    assert jax.tree.map(lambda x: x.dtype, states[-1]) == jax.tree.map(lambda x: x.dtype, state)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kwargs"), CASES)
def test_update_under_jit_equals_eager_and_state_round_trips(name, kwargs, request):
    params, grads_seq, runs = jitted_steps(5, random_tree)
    opt = optim.OPTIMIZERS[name](**kwargs)
    eager, eager_states = run_steps(opt, params, grads_seq)
    jitted, jit_states = runs[request.node.callspec.id]
    # Only fused multiply-adds may differ between the two compilations.
    assert_trees_close(jitted, eager, rtol=1e-14, what=f"{name} jit vs eager")
    assert_trees_close(jit_states[-1], eager_states[-1], rtol=1e-14, what="state")
    # A state is a pytree: flattened and rebuilt, it is the same NamedTuple and steps alike.
    leaves, treedef = jax.tree_util.tree_flatten(jit_states[-1])
    rebuilt = jax.tree_util.tree_unflatten(treedef, leaves)
    assert type(rebuilt) is type(opt.init(params))
    assert treedef == jax.tree.structure(opt.init(params))
    u1, s1 = opt.update(grads_seq[0], jit_states[-1])
    u2, s2 = opt.update(grads_seq[0], rebuilt)
    assert_trees_close(u2, u1, rtol=0.0, what="update after round trip")
    assert_trees_close(s2, s1, rtol=0.0, what="state after round trip")


@pytest.mark.slow
@pytest.mark.parametrize(("name", "kwargs"), CASES[::2])
def test_inject_hyperparams_passes_traced_hyperparameters(name, kwargs):
    """optax.inject_hyperparams builds the optimizer at every update, under jit with
    traced array hyperparameters: no check can run on them, and leaves keep their dtypes."""
    rng = np.random.default_rng(7)
    params = jax.tree.map(jnp.asarray, mixed_tree(rng))
    grads_seq = random_grads(rng, params, steps=3)
    injected = optax.inject_hyperparams(optim.OPTIMIZERS[name])(**kwargs)
    got, states = run_steps(injected, params, grads_seq, step=jax.jit(injected.update))
    expected, expected_states = run_steps(optim.OPTIMIZERS[name](**kwargs), params, grads_seq)
    dtypes = lambda tree: jax.tree.map(lambda x: x.dtype, tree)
    assert dtypes(states[-1].inner_state) == dtypes(expected_states[-1])
    updates, _ = jax.jit(injected.update)(grads_seq[0], states[-1])
    assert dtypes(updates) == dtypes(params)
    for g, e in zip(jax.tree.leaves(got[-1]), jax.tree.leaves(expected[-1]), strict=True):
        assert g.dtype == e.dtype
        # float64 hyperparameters reach float32 leaves: a rounding or two of 6e-8.
        rtol = 1e-14 if g.dtype == jnp.float64 else 1e-6
        np.testing.assert_allclose(g, e, rtol=rtol, atol=0)
    with pytest.raises(ValueError, match=r"learning_rate must be .* got Array\(-0\.1"):
        optax.inject_hyperparams(optim.OPTIMIZERS[name])(learning_rate=-0.1).init(params)


def test_jitted_train_step_traces_once():
    """The state keeps its structure, dtypes and weak types, so jit never retraces: a
    step of every optimizer (side by side in one jitted function), three times."""
    traces = []
    opts = {name: optim.OPTIMIZERS[name](0.01) for name in NAMES}
    params, X, Y = network_problem(jnp.float64)

    @jax.jit
    def step(params, states):
        traces.append(1)
        new = {}
        for name, opt in opts.items():
            p = params[name]
            updates, state = opt.update(jaxnn.backprop(p, X, Y, NET), states[name], p)
            new[name] = (optax.apply_updates(p, updates), state)
        return {k: p for k, (p, _) in new.items()}, {k: s for k, (_, s) in new.items()}

    params = {name: params for name in NAMES}
    states = {name: opt.init(params[name]) for name, opt in opts.items()}
    avals = lambda tree: jax.tree.map(lambda x: jax.typeof(x), tree)
    initial = avals(states)
    for _ in range(3):
        params, states = step(params, states)
    changed = [name for name in NAMES if avals(states[name]) != initial[name]]
    assert len(traces) == 1 and not changed, f"states that changed type: {changed}"
    assert {name: int(s.count) for name, s in states.items()} == dict.fromkeys(NAMES, 3)


# --- bad input ----------------------------------------------------------------------------

BAD = [
    (lambda: optim.sgd(0.0), r"learning_rate must be a finite float > 0, i\.e\. in \(0, inf\)"),
    (lambda: optim.sgd(-0.1), r"learning_rate .* in \(0, inf\).*got -0\.1"),
    (lambda: optim.adam(float("nan")), r"learning_rate .* in \(0, inf\).*got nan"),
    (lambda: optim.rmsprop(math.inf), r"learning_rate .* in \(0, inf\)"),
    (lambda: optim.momentum(0.1, beta=1.0), r"beta must be in \[0, 1\), got 1\.0"),
    (lambda: optim.momentum(0.1, beta=-0.1), r"beta must be in \[0, 1\), got -0\.1"),
    (lambda: optim.momentum(0.1, beta=float("nan")), r"beta must be in \[0, 1\), got nan"),
    (lambda: optim.rmsprop(0.1, decay=1.5), r"decay must be in \[0, 1\), got 1\.5"),
    (lambda: optim.adam(0.1, b1=1.0), r"b1 must be in \[0, 1\), got 1\.0"),
    (lambda: optim.adam(0.1, b2=-1e-3), r"b2 must be in \[0, 1\), got -0\.001"),
    (lambda: optim.adam(0.1, eps=-1e-8), r"eps must be a finite float >= 0, i\.e\. in \[0, inf\)"),
    (lambda: optim.rmsprop(0.1, eps=-1.0), r"eps must be .* in \[0, inf\), got -1\.0"),
    (lambda: optim.adam(jnp.ones(2)), r"learning_rate must be a scalar, got shape \(2,\)"),
    (lambda: optim.optax_equivalent("adam", learning_rate=-1.0), r"learning_rate .* \(0, inf\)"),
    (lambda: optim.optax_equivalent("momentum", learning_rate=0.1, beta=1), r"beta .* \[0, 1\)"),
    (
        lambda: optim.optax_equivalent("adamw", learning_rate=0.1),
        r"unknown optimizer 'adamw'; valid names: 'sgd', 'momentum', 'rmsprop', 'adam'",
    ),
    (
        lambda: optim.optax_equivalent("rmsprop", learning_rate=0.1, eps=0.0),
        r"optax_equivalent\('rmsprop', eps=0\): no exact optax equivalent",
    ),
]


@pytest.mark.parametrize(("make", "match"), BAD)
def test_invalid_hyperparameters_raise_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_optax_equivalent_rejects_keywords_the_jaxnn_optimizer_does_not_take():
    with pytest.raises(TypeError, match="momentum"):
        optim.optax_equivalent("sgd", learning_rate=0.1, momentum=0.9)


@pytest.mark.parametrize("name", ["momentum", "rmsprop", "adam"])
def test_grads_of_another_structure_are_rejected_naming_both(name):
    params = {"W": jnp.zeros((2, 3)), "b": jnp.zeros((2, 1))}
    opt = optim.OPTIMIZERS[name](0.1)
    state = opt.init(params)
    grads = {"W": jnp.zeros((2, 3))}
    with pytest.raises(ValueError, match=rf"{name}\.update: grads have tree structure") as e:
        opt.update(grads, state)
    assert str(jax.tree.structure(grads)) in str(e.value)
    assert str(jax.tree.structure(params)) in str(e.value)
    with pytest.raises(ValueError, match=r"grads\['b'\] has shape \(2,\), the state expects"):
        opt.update({"W": jnp.zeros((2, 3)), "b": jnp.zeros(2)}, state)


# --- docs ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_pytorch_mappings_in_the_docs(torch):
    """docs/optimizers.md's PyTorch column, six float64 steps each."""
    rng = np.random.default_rng(6)
    w0 = rng.normal(size=(3, 4))
    grads_seq = random_grads(rng, w0, steps=6)

    def torch_steps(make):
        w = torch.nn.Parameter(torch.tensor(w0, dtype=torch.float64))
        opt = make([w])
        out = []
        for g in grads_seq:
            w.grad = torch.tensor(g, dtype=torch.float64)
            opt.step()
            out.append(w.detach().numpy().copy())
        return out

    a, beta, b1, b2, eps = 0.1, 0.9, 0.8, 0.95, 1e-3
    pairs = {
        "SGD(lr=a)": (optim.sgd(a), lambda p: torch.optim.SGD(p, lr=a)),
        "SGD(lr=a(1-beta), momentum=beta)": (
            optim.momentum(a, beta),
            lambda p: torch.optim.SGD(p, lr=a * (1 - beta), momentum=beta),
        ),
        "RMSprop(lr=a, alpha=decay, eps)": (
            optim.rmsprop(a, decay=0.5, eps=eps),
            lambda p: torch.optim.RMSprop(p, lr=a, alpha=0.5, eps=eps),
        ),
        "Adam(lr=a, betas=(b1, b2), eps)": (
            optim.adam(a, b1, b2, eps),
            lambda p: torch.optim.Adam(p, lr=a, betas=(b1, b2), eps=eps),
        ),
    }
    for what, (ours, make) in pairs.items():
        got, _ = run_steps(ours, w0, grads_seq)
        assert_trees_close(got, torch_steps(make), rtol=1e-13, what=what)
    # dampening=beta starts its buffer at dW, not (1 - beta) dW: it departs at step 1.
    got, _ = run_steps(optim.momentum(a, beta), w0, grads_seq[:1])
    dampened = torch_steps(lambda p: torch.optim.SGD(p, lr=a, momentum=beta, dampening=beta))
    np.testing.assert_allclose(dampened[0], w0 - a * grads_seq[0], rtol=1e-14)
    np.testing.assert_allclose(got[0], w0 - a * (1 - beta) * grads_seq[0], rtol=1e-14)


def test_docstring_examples():
    result = doctest.testmod(optim, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted >= 5 and result.failed == 0


@pytest.mark.slow
def test_nesterov_momentum_equals_optax_nesterov_sgd_at_learning_rate_times_1_minus_beta(
    trajectories,
):
    """(OPT-M3): with T = V / (1 - beta), W -= a (beta V + (1 - beta) dW) is optax's
    Nesterov step -a (1 - beta) (dW + beta T); 1000 steps of training within 1e-12
    (a = 0.5, beta = 0.9: ``trajectories``)."""
    traj = trajectories
    assert_trees_close(
        traj["nesterov/jaxnn"], traj["nesterov/optax.sgd"], rtol=1e-12, what="nesterov"
    )


def test_nesterov_momentum_equals_scikit_learns_sgd_optimizer():
    """scikit-learn's SGDOptimizer (undamped, nesterov=True) at rate a (1 - beta): a third
    implementation, NumPy, over 50 steps of random gradients."""
    from sklearn.neural_network._stochastic_optimizers import SGDOptimizer

    rng = np.random.default_rng(3)
    params = [rng.normal(size=(3, 2)), rng.normal(size=2)]
    theirs = [p.copy() for p in params]
    sk = SGDOptimizer(theirs, 0.05, momentum=0.8, nesterov=True)
    opt = optim.momentum(0.05 / (1 - 0.8), 0.8, nesterov=True)
    ours, state = [jnp.asarray(p) for p in params], None
    state = opt.init(ours)
    for _ in range(50):
        grads = [rng.normal(size=p.shape) for p in params]
        sk.update_params(theirs, grads)
        updates, state = opt.update([jnp.asarray(g) for g in grads], state)
        ours = [p + u for p, u in zip(ours, updates, strict=True)]
    for p, q in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-13)
    assert not np.allclose(theirs[0], params[0])  # the steps moved the weights


@pytest.mark.slow
@pytest.mark.parametrize("eps", [1e-8, 1e-2])
def test_adam_eps_hat_is_scikit_learns_adam(eps):
    """``eps_hat=True`` (OPT-A5) against scikit-learn's AdamOptimizer (NumPy, float64) over
    50 steps of random gradients: within 1e-12; the seed's form (OPT-A4) is not, at a
    large eps (not vacuous), and in float32 the same steps stay within float32 rounding."""
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer

    rng = np.random.default_rng(5)
    params = [rng.normal(size=(3, 2)), rng.normal(size=2)]
    theirs = [p.copy() for p in params]
    sk = AdamOptimizer(theirs, 0.01, 0.9, 0.99, eps)
    hat, seed = optim.adam(0.01, 0.9, 0.99, eps, eps_hat=True), optim.adam(0.01, 0.9, 0.99, eps)
    runs = {
        "hat": [jnp.asarray(p) for p in params],
        "seed": [jnp.asarray(p) for p in params],
        "hat32": [jnp.asarray(p, jnp.float32) for p in params],
    }
    opts = {"hat": hat, "seed": seed, "hat32": hat}
    states = {k: opts[k].init(runs[k]) for k in runs}
    for _ in range(50):
        grads = [rng.normal(size=p.shape) for p in params]
        sk.update_params(theirs, grads)
        for k, ps in runs.items():
            g = [jnp.asarray(x, ps[0].dtype) for x in grads]
            updates, states[k] = opts[k].update(g, states[k])
            runs[k] = [p + u for p, u in zip(ps, updates, strict=True)]
    for p, q in zip(runs["hat"], theirs, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-12, atol=1e-13)
    for p, q in zip(runs["hat32"], theirs, strict=True):
        assert p.dtype == jnp.float32
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-5)  # float32 over 50 steps
    gap = max(float(np.max(np.abs(p - q))) for p, q in zip(runs["seed"], theirs, strict=True))
    if eps == 1e-2:
        assert gap > 1e-3  # where eps sits matters: (OPT-A4) is not scikit-learn's
    assert not np.allclose(theirs[0], params[0])


def test_adam_eps_hat_equals_the_seeds_form_at_eps_0():
    """At eps = 0 the two placements are the same update, (OPT-A4) = (OPT-A5)."""
    rng = np.random.default_rng(6)
    params = {"W": jnp.asarray(rng.normal(size=(4, 3)))}
    grads = [{"W": jnp.asarray(rng.normal(size=(4, 3)))} for _ in range(5)]
    out = {}
    for eps_hat in (False, True):
        opt = optim.adam(0.1, eps=0.0, eps_hat=eps_hat)
        p, state = params, opt.init(params)
        for g in grads:
            u, state = opt.update(g, state)
            p = optax.apply_updates(p, u)
        out[eps_hat] = p
    assert_trees_close(out[True], out[False], rtol=1e-13, what="eps=0")
