"""Training in JAX's default configuration: x64 off, so everything is float32.

``conftest.py`` turns x64 on for the other in-process tests; here the ``default_dtype``
fixture turns it off for the test (``jax.enable_x64(False)``), as a user's process
has it. Each result is checked against the same computation in float64 (x64 back on)
with a stated tolerance, relative to each leaf's scale, or bitwise where float32
must give the same bits (a resumed run).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import data, optim, steps, train
from tests.helpers import assert_trees_close
from tests.test_train import toy, toy_data

# float32 has a 6e-8 unit roundoff; a few epochs of small steps stay well inside this.
TOL = 1e-5


@pytest.fixture
def default_dtype():
    with jax.enable_x64(False):
        assert jnp.zeros(1).dtype == jnp.float32
        yield


def in_float64(tree):
    """Floating leaves as float64 NumPy arrays; others (a step count) as they are."""
    up = lambda x: np.asarray(x, np.float64 if jnp.issubdtype(x.dtype, jnp.floating) else None)
    return jax.tree.map(up, tree)


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_array_equal(x, y)


def dtypes(tree):
    return {str(np.asarray(x).dtype) for x in jax.tree.leaves(tree)}


def float64_run(net, optimizer, ds, epochs, batch_size, key, params, **kwargs):
    """The same run with x64 on, from the float32 run's initial params, in float64."""
    with jax.enable_x64(True):
        ds64 = ds._replace(**{k: np.asarray(getattr(ds, k), np.float64) for k in train.DATA_FIELDS})
        return train.fit(
            net, optimizer, ds64, epochs, batch_size, key, params=in_float64(params), **kwargs
        )


def by_hand(net, optimizer, ds, epochs, batch_size, key, params):
    """fit's documented schedule, written out in float64: epoch e takes one ``make_step``
    per batch of ``epoch_batches(fold_in(shuffle_key, e), m, B)``, on the data as given
    (cast to float64 by NumPy). Independent of fit's own casting and shuffling."""
    with jax.enable_x64(True):
        _, shuffle_key = jax.random.split(key)
        X, Y = np.asarray(ds.X_train, np.float64), np.asarray(ds.Y_train, np.float64)
        params = in_float64(params)
        state, step = optimizer.init(params), steps.make_step(net, optimizer)
        for e in range(epochs):
            batches = steps.epoch_batches(
                jax.random.fold_in(shuffle_key, e), X.shape[1], batch_size
            )
            for idx in np.asarray(batches):
                params, state, _ = step(params, state, X[:, idx], Y[:, idx])
        return in_float64(params)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("head", "optimizer", "tol"),
    # Seen: sgd 3.6e-7 (params); adam 6.3e-6 (params) and 1.6e-5 (its first moment, the
    # mean of recent gradients, whose small entries float32 rounding moves most).
    [("softmax", optim.sgd(0.1), TOL), ("linear", optim.adam(1e-2), 1e-4)],
    ids=["softmax-sgd", "linear-adam"],
)
def test_fit_in_float32_follows_float64(default_dtype, head, optimizer, tol):
    """3 epochs of 5 steps in float32 against float64 from the same initial params."""
    net, ds, _ = toy_data(head)
    ds = ds._replace(**{k: np.asarray(getattr(ds, k)) for k in train.DATA_FIELDS})
    key = jax.random.key(0)
    start = train.fit(net, optimizer, ds, 0, 8, key).params  # init_params, float32
    assert dtypes(start) == {"float32"}
    result = train.fit(net, optimizer, ds, 3, 8, key)
    assert dtypes(result.params) == {"float32"}
    assert dtypes(result.opt_state) <= {"float32", "int32"}
    reference = float64_run(net, optimizer, ds, 3, 8, key, start)
    assert_trees_close(in_float64(result.params), reference.params, tol, "params")
    assert_trees_close(in_float64(result.opt_state), reference.opt_state, tol, "opt_state")
    for got, want in zip(result.history, reference.history, strict=True):
        assert got.keys() == want.keys()
        for k in got:
            assert abs(got[k] - want[k]) <= tol * max(1.0, abs(want[k])), (k, got, want)


@pytest.mark.slow
def test_resume_in_float32_is_bitwise(default_dtype):
    net, ds, _ = toy_data("softmax")
    opt, key = optim.adam(1e-2), jax.random.key(5)
    full = train.fit(net, opt, ds, 4, 8, key)
    half = train.fit(net, opt, ds, 2, 8, key)
    resumed = train.fit(
        net, opt, ds, 4, 8, key,
        params=half.params, opt_state=half.opt_state, start_epoch=2, history=half.history,
    )  # fmt: skip
    assert dtypes(full.params) == {"float32"}
    assert_trees_equal(full[:2], resumed[:2])
    assert resumed.history == full.history


@pytest.mark.parametrize("gradients", ["hand", "autodiff"])
def test_step_in_float32(default_dtype, gradients):
    """One adam step: float32 cost within TOL of float64's; the update within 1e-4 of its
    scale (the learning rate), where 1.3e-5 was seen: Adam's first update is g / |g|
    entry by entry, which float32 rounding moves most where |g| is small."""
    net, X, Y, params = toy("softmax")
    X32, Y32, p32 = (jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), t) for t in (X, Y, params))
    opt = optim.adam(0.01)
    p, _, c = steps.make_step(net, opt, gradients)(p32, opt.init(p32), X32, Y32)
    assert c.dtype == jnp.float32 and dtypes(p) == {"float32"}
    with jax.enable_x64(True):
        P, X64, Y64 = in_float64(p32), np.asarray(X32, np.float64), np.asarray(Y32, np.float64)
        p_ref, _, c_ref = steps.make_step(net, opt, gradients)(P, opt.init(P), X64, Y64)
        change = lambda q: jax.tree.map(lambda a, b: np.asarray(a, np.float64) - b, q, P)
        assert abs(float(c) - float(c_ref)) <= TOL * abs(float(c_ref))
        assert_trees_close(change(p), change(p_ref), 1e-4, "update")


@pytest.mark.slow
@pytest.mark.parametrize("x64", [True, False], ids=["x64-on", "x64-off"])
def test_fit_casts_data_to_the_params_dtype(x64):
    """float64 data and float32 params: the run is bitwise the run on the data cast to
    float32 first (integer data too), and its parameters' change over 2 epochs is within
    1e-4 of the change by hand (``by_hand``) on the data cast to float32 by NumPy, where
    1.2e-5 was seen (data rounded to bfloat16 would be off by ~4e-3)."""
    net, ds, params = toy_data("linear")
    ds64 = ds._replace(**{k: np.asarray(getattr(ds, k), np.float64) for k in train.DATA_FIELDS})
    ds32 = ds._replace(**{k: np.asarray(getattr(ds, k), np.float32) for k in train.DATA_FIELDS})
    p32 = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
    key, opt = jax.random.key(0), optim.sgd(0.01)
    with jax.enable_x64(x64):
        got = train.fit(net, opt, ds64, 2, 10, key, params=p32)
        cast_first = train.fit(net, opt, ds32, 2, 10, key, params=p32)
        assert dtypes(got.params) == {"float32"}
        assert_trees_equal(got.params, cast_first.params)
        assert got.history == cast_first.history
        rounded = ds._replace(X_train=np.round(np.asarray(ds.X_train) * 4).astype(np.int32))
        ints = train.fit(net, opt, rounded, 1, 10, key, params=p32)
        as_floats = rounded._replace(X_train=np.asarray(rounded.X_train, np.float32))
        expected = train.fit(net, opt, as_floats, 1, 10, key, params=p32)
        assert_trees_equal(ints.params, expected.params)
    reference = by_hand(net, opt, ds32, 2, 10, key, p32)
    change = lambda tree: jax.tree.map(np.subtract, in_float64(tree), in_float64(p32))
    assert_trees_close(change(got.params), change(reference), 1e-4, "change")


@pytest.mark.slow  # 270 steps on digits, for an accuracy floor
def test_bundled_dataset_trains_in_float32(default_dtype):
    """digits in float32 clears the accuracy floor of test_train's float64 run (0.9, set
    below the worst of 8 seeds there)."""
    ds = data.load("digits")
    net = ds.network((32,), "relu")
    result = train.fit(net, optim.adam(3e-3), ds, 6, 32, jax.random.key(0))
    assert dtypes(result.params) == {"float32"} and dtypes(result.opt_state) <= {"float32", "int32"}
    assert result.history[-1]["test_accuracy"] >= 0.9
