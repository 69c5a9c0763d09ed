"""jaxnn.sklearn: scikit-learn's own MLP as the witness.

With ``solver="sgd"`` both libraries take the same batches from the same initial
weights (jaxnn draws both from scikit-learn's random stream), so a fit must equal
scikit-learn's step for step: parameters and loss curve within 1e-12
(float64), the same number of epochs under every stopping rule. With Adam the two
differ only where the seed puts eps (inside the bias correction; scikit-learn's
outside it). The hand gradient equals ``gradients="autodiff"`` within 1e-10.
"""

import pickle
import warnings

import numpy as np
import pytest
import sklearn.neural_network as skl
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import jaxnn
from jaxnn.sklearn import MLPClassifier, MLPRegressor, program

pytestmark = pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")

RNG = np.random.RandomState(0)
X = RNG.randn(50, 4)
TARGETS = {
    "binary": (MLPClassifier, skl.MLPClassifier, (X[:, 0] + X[:, 1] > 0).astype(int)),
    "multiclass": (MLPClassifier, skl.MLPClassifier, np.digitize(X[:, 0], [-0.5, 0.5])),
    "multilabel": (
        MLPClassifier,
        skl.MLPClassifier,
        np.c_[X[:, 0] + X[:, 1] > 0, X[:, 2] > 0].astype(int),
    ),
    "regression": (MLPRegressor, skl.MLPRegressor, X @ [1.0, -2, 0.5, 0] + 0.1 * RNG.randn(50)),
}
COMMON = dict(
    hidden_layer_sizes=(7, 5), batch_size=16, shuffle=False, random_state=3, max_iter=40,
    alpha=0.01, solver="sgd",
)  # fmt: skip


def both(target: str, **kw):
    ours, theirs, y = TARGETS[target]
    settings = {**COMMON, **kw}
    return ours(**settings).fit(X, y), theirs(**settings).fit(X, y)


def assert_same_fit(a, b, rtol=1e-12, atol=1e-13):
    assert a.n_iter_ == b.n_iter_ and a.t_ == b.t_
    for x, y in zip(a.coefs_ + a.intercepts_, b.coefs_ + b.intercepts_, strict=True):
        assert x.shape == y.shape
        np.testing.assert_allclose(x, y, rtol=rtol, atol=atol)
    np.testing.assert_allclose(a.loss_curve_, b.loss_curve_, rtol=rtol, atol=atol)


@pytest.mark.slow
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_sgd_with_nesterovs_momentum_is_scikit_learns_fit(target):
    a, b = both(target)
    assert_same_fit(a, b)
    assert a.out_activation_ == b.out_activation_ and a.n_outputs_ == b.n_outputs_
    if target == "regression":
        np.testing.assert_allclose(a.predict(X), b.predict(X), rtol=1e-12)
    else:
        np.testing.assert_array_equal(a.predict(X), b.predict(X))


@pytest.mark.slow
def test_shuffled_batches_and_several_targets_are_scikit_learns():
    """shuffle=True (the default): the same permutations from the same random_state;
    three regression targets: the same steps, and the loss reported per output."""
    a, b = both("multiclass", shuffle=True)
    assert_same_fit(a, b)
    Y3 = np.c_[TARGETS["regression"][2], X[:, 1], X[:, 2] - X[:, 3]]
    settings = {**COMMON, "shuffle": True, "tol": 0.05}
    a, b = MLPRegressor(**settings).fit(X, Y3), skl.MLPRegressor(**settings).fit(X, Y3)
    assert_same_fit(a, b)
    assert a.n_iter_ < COMMON["max_iter"]


@pytest.mark.slow
def test_a_long_fit_in_several_calls_is_one_fit(monkeypatch):
    """Above ``ORDER_ENTRIES`` row indices a fit runs as several calls of the program;
    the calls continue one another exactly (and scikit-learn's stream with them)."""
    whole = both("binary", shuffle=True)[1]
    monkeypatch.setattr(program, "ORDER_ENTRIES", 3 * program.padded_size(50))  # 3 epochs
    ours, _, y = TARGETS["binary"]
    assert_same_fit(ours(**{**COMMON, "shuffle": True}).fit(X, y), whole)


CASES = [
    ("binary", dict(nesterovs_momentum=False)),
    ("multiclass", dict(momentum=0.0)),
    ("regression", dict(learning_rate="invscaling", learning_rate_init=0.1)),
    ("multiclass", dict(learning_rate="adaptive", tol=0.01, n_iter_no_change=2)),
    ("binary", dict(tol=0.05, n_iter_no_change=3)),  # the training loss stops it
    ("multilabel", dict(early_stopping=True, validation_fraction=0.2)),
    ("regression", dict(early_stopping=True, validation_fraction=0.2, tol=0.05)),
    ("binary", dict(activation="tanh")),
    ("multiclass", dict(activation="logistic")),
    ("regression", dict(activation="identity", hidden_layer_sizes=())),
    ("multiclass", dict(batch_size=200)),  # one batch of the whole set (clipped, warned)
]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:Got `batch_size`")
@pytest.mark.parametrize(("target", "kw"), CASES)
def test_every_rule_is_scikit_learns(target, kw):
    a, b = both(target, **kw)
    assert_same_fit(a, b)
    if kw.get("early_stopping"):
        np.testing.assert_allclose(a.validation_scores_, b.validation_scores_, rtol=1e-12)
        assert a.best_validation_score_ == pytest.approx(b.best_validation_score_, rel=1e-12)
        assert a.best_loss_ is None and b.best_loss_ is None
    else:
        assert a.best_loss_ == pytest.approx(b.best_loss_, rel=1e-12)
    if "tol" in kw or "early_stopping" in kw:
        assert a.n_iter_ < COMMON["max_iter"]  # the rule, not the limit, ended it


@pytest.mark.slow
@pytest.mark.parametrize("epsilon", [1e-8, 1e-3])
def test_adam_is_scikit_learns(epsilon):
    """solver="adam" computes scikit-learn's Adam, eps beside sqrt(v) before the bias
    correction (OPT-A5): the same weights and loss curve within 1e-12 after 120 steps,
    at the default eps and at a large one, where the seed's placement (OPT-A4) would
    differ by 0.49."""
    a, b = both("multiclass", solver="adam", learning_rate_init=0.01, epsilon=epsilon)
    assert_same_fit(a, b)


@pytest.mark.slow
@pytest.mark.parametrize("target", ["multiclass", pytest.param("binary", marks=pytest.mark.slow)])
@pytest.mark.parametrize("solver", ["adam", "sgd", "rmsprop"])
def test_hand_gradients_equal_autodiff(target, solver):
    """The whole fit with the hand gradient (BP1-W, BP2-BP4, BP4-L2) and with
    jax.value_and_grad of (C-W) + (C-L2): within 1e-10 after 40 epochs (float64)."""
    ours, _, y = TARGETS[target]
    settings = {**COMMON, "solver": solver, "shuffle": True}
    hand = ours(**settings).fit(X, y)
    auto = ours(**settings, gradients="autodiff").fit(X, y)
    for p, q in zip(hand.coefs_ + hand.intercepts_, auto.coefs_ + auto.intercepts_, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-10, atol=1e-12)
    assert hand.loss_curve_[-1] < hand.loss_curve_[0]


@pytest.mark.slow
def test_float32_data_trains_in_float32_within_its_rounding():
    """X in float32: the fit runs in float32 (predict in float64 from its weights); within
    1e-3 of the float64 fit after 40 epochs (float32 rounding through 120 steps)."""
    ours, _, y = TARGETS["multiclass"]
    f32 = ours(**COMMON).fit(X.astype(np.float32), y)
    f64 = ours(**COMMON).fit(X, y)
    assert f32.coefs_[0].dtype == np.float32 and f64.coefs_[0].dtype == np.float64
    for p, q in zip(f32.coefs_, f64.coefs_, strict=True):
        np.testing.assert_allclose(p, q, rtol=1e-3, atol=1e-4)


@pytest.mark.slow
def test_partial_fit_and_warm_start_are_scikit_learns():
    ours, theirs, y = TARGETS["multiclass"]
    a, b = ours(**COMMON), theirs(**COMMON)
    for _ in range(3):
        a.partial_fit(X, y, classes=[0, 1, 2])
        b.partial_fit(X, y, classes=[0, 1, 2])
    assert_same_fit(a, b)
    a.set_params(warm_start=True, max_iter=5).fit(X, y)
    b.set_params(warm_start=True, max_iter=5).fit(X, y)
    assert_same_fit(a, b)
    assert len(a.loss_curve_) == 8


@pytest.mark.slow
def test_labels_of_any_type_and_the_fitted_attributes():
    y = np.array(["cat", "dog", "eel"])[np.digitize(X[:, 0], [-0.5, 0.5])]
    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=30, random_state=0).fit(X, y)
    assert list(clf.classes_) == ["cat", "dog", "eel"] and set(clf.predict(X)) <= set(y)
    assert [c.shape for c in clf.coefs_] == [(4, 6), (6, 3)]
    assert [b.shape for b in clf.intercepts_] == [(6,), (3,)]
    assert clf.n_features_in_ == 4 and clf.n_outputs_ == 3 and clf.n_layers_ == 3
    assert clf.out_activation_ == "softmax" and clf.n_iter_ == 30 == len(clf.loss_curve_)
    assert clf.t_ == 30 * 50 and clf.best_loss_ == min(clf.loss_curve_)
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(proba))
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], clf.predict(X))
    flags = MLPClassifier(hidden_layer_sizes=(6,), max_iter=5).fit(X, X[:, 0] > 0)
    assert flags.classes_.dtype == bool and flags.out_activation_ == "logistic"
    assert flags.predict_proba(X).shape == (50, 2)


@pytest.mark.slow
def test_feature_names_from_a_dataframe():
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(X, columns=["a", "b", "c", "d"])
    reg = MLPRegressor(hidden_layer_sizes=(3,), max_iter=5).fit(frame, TARGETS["regression"][2])
    assert list(reg.feature_names_in_) == ["a", "b", "c", "d"]
    with pytest.warns(UserWarning, match="feature names"):
        reg.predict(X)


@pytest.mark.slow
def test_predict_is_jaxnns_forward_pass_of_the_fitted_weights():
    ours, _, y = TARGETS["multilabel"]
    clf = ours(**COMMON).fit(X, y)
    params = [{"W": W.T, "b": b[:, None]} for W, b in zip(clf.coefs_, clf.intercepts_, strict=True)]
    net = jaxnn.Network((4, 7, 5, 2), ("relu", "relu", "sigmoid"), "binary_cross_entropy")
    np.testing.assert_allclose(
        clf.predict_proba(X), np.asarray(jaxnn.predict(params, X.T, net)).T, rtol=1e-12
    )


@pytest.mark.slow
def test_folds_refits_and_hyperparameters_share_one_program():
    """Sizes 90, 100 and 120 pad to 128 rows; a new learning rate or alpha is a traced
    value: one compile for all five fits."""
    rng = np.random.RandomState(1)
    Xs, ys = rng.randn(120, 3), rng.randint(0, 3, 120)
    compiled = program._RUN["cpu"]._cache_size()
    for m, lr, alpha in [(90, 1e-3, 1e-4), (100, 1e-2, 1e-4), (120, 1e-3, 1.0), (101, 0.1, 0.0)]:
        MLPClassifier((5,), batch_size=8, max_iter=3, learning_rate_init=lr, alpha=alpha).fit(
            Xs[:m], ys[:m]
        )
    assert program._RUN["cpu"]._cache_size() == compiled + 1
    MLPClassifier((6,), batch_size=8, max_iter=3).fit(Xs, ys)  # a new shape: a new program
    assert program._RUN["cpu"]._cache_size() == compiled + 2


@pytest.mark.slow
def test_pipeline_grid_search_clone_and_pickle():
    ours, _, y = TARGETS["multiclass"]
    grid = GridSearchCV(
        make_pipeline(StandardScaler(), ours(hidden_layer_sizes=(5,), max_iter=10)),
        {"mlpclassifier__learning_rate_init": [1e-3, 1e-2], "mlpclassifier__alpha": [1e-4, 1.0]},
        cv=3,
    ).fit(X, y)
    assert len(grid.cv_results_["mean_test_score"]) == 4 and 0 <= grid.best_score_ <= 1
    fitted = grid.best_estimator_[-1]
    assert clone(fitted).get_params() == fitted.get_params() and not hasattr(
        clone(fitted), "coefs_"
    )
    again = pickle.loads(pickle.dumps(grid.best_estimator_))
    np.testing.assert_array_equal(again.predict_proba(X), grid.best_estimator_.predict_proba(X))
    again[-1].set_params(warm_start=True).fit(again[0].transform(X), y)  # and trains on
    assert again[-1].n_iter_ == 10


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (dict(solver="lbfgs"), "solver='lbfgs' is not offered"),
        (dict(solver="newton"), "solver must be one of 'adam', 'sgd', 'rmsprop'"),
        (dict(activation="gelu"), "activation must be one of 'relu', 'tanh'"),
        (dict(hidden_layer_sizes=(4, 0)), r"hidden_layer_sizes\[1\] must be an int >= 1"),
        (dict(momentum=1.0), r"momentum must be a float in \[0, 1\)"),
        (dict(batch_size=0), "batch_size must be 'auto' or an int >= 1"),
        (dict(gradients="numeric"), "gradients must be one of 'hand', 'autodiff'"),
        (dict(learning_rate="cosine"), "learning_rate must be one of 'constant'"),
        (dict(max_iter=0), "max_iter must be an int >= 1"),
    ],
)
def test_bad_parameters_are_named_before_any_math(settings, message):
    with pytest.raises(ValueError, match=message):
        MLPClassifier(**settings).fit(X, TARGETS["binary"][2])


@pytest.mark.slow
def test_partial_fit_rules_and_divergence_are_clear_errors():
    y = TARGETS["binary"][2]
    with pytest.raises(ValueError, match="sample_weight is not offered"):
        MLPClassifier().partial_fit(X, y, np.ones(50), classes=[0, 1])
    with pytest.raises(ValueError, match="loss must be 'squared_error'"):
        MLPRegressor("poisson").fit(X, X[:, 0])
    with pytest.raises(ValueError, match="classes must be passed on the first call"):
        MLPClassifier().partial_fit(X, y)
    with pytest.raises(ValueError, match="partial_fit does not support early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match=r"training diverged.*lower learning_rate_init"):
        MLPRegressor(solver="sgd", learning_rate_init=1e6, max_iter=5).fit(X, X @ [1e3, 0, 0, 0])


@pytest.mark.slow
def test_the_iteration_limit_warns_as_scikit_learn_does():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        MLPClassifier(hidden_layer_sizes=(3,), max_iter=2).fit(X, TARGETS["binary"][2])
    assert any(issubclass(w.category, ConvergenceWarning) for w in caught)


@pytest.mark.slow
def test_verbose_prints_scikit_learns_lines(capsys):
    MLPClassifier(hidden_layer_sizes=(3,), max_iter=3, verbose=True).fit(X, TARGETS["binary"][2])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(",")[0] for line in lines] == [f"Iteration {i}" for i in (1, 2, 3)]
    assert all(float(line.split("= ")[1]) > 0 for line in lines)


@pytest.mark.slow
def test_two_worker_processes_cross_validate_and_grid_search():
    """n_jobs=2: the estimators travel to loky's worker processes and back (pickled as
    NumPy), and score as they do in this process."""
    from sklearn.model_selection import cross_val_score

    ours, _, y = TARGETS["multiclass"]
    est = ours(hidden_layer_sizes=(5,), max_iter=10, random_state=0)
    one = cross_val_score(est, X, y, cv=3, n_jobs=1)
    two = cross_val_score(est, X, y, cv=3, n_jobs=2)
    np.testing.assert_allclose(one, two, rtol=1e-6)
    grid = GridSearchCV(est, {"alpha": [1e-4, 1.0]}, cv=3, n_jobs=2).fit(X, y)
    assert grid.best_estimator_.n_iter_ == 10 and len(grid.cv_results_["params"]) == 2


@pytest.mark.slow
def test_a_pickled_estimator_predicts_in_a_fresh_process_and_trains_on(tmp_path):
    """joblib's file holds NumPy arrays only: a new process predicts from it with no
    compile (the forward pass is NumPy) and compiles again only to train."""
    import joblib

    from tests.helpers import run_script

    ours, _, y = TARGETS["multiclass"]
    clf = ours(hidden_layer_sizes=(5,), max_iter=10, random_state=0).fit(X, y)
    joblib.dump(clf, tmp_path / "clf.joblib")
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    script = """
import sys, joblib, jax, numpy as np
clf = joblib.load(sys.argv[1] + "/clf.joblib")
X = np.load(sys.argv[1] + "/X.npy")
np.save(sys.argv[1] + "/proba.npy", clf.predict_proba(X))
from jaxnn.sklearn import program
assert program._RUN["cpu"]._cache_size() == 0  # predicting compiled nothing
clf.set_params(warm_start=True, max_iter=2).fit(X, np.load(sys.argv[1] + "/y.npy"))
print(clf.n_iter_, len(clf.loss_curve_))
"""
    done = run_script(script, str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2", "12"]
    np.testing.assert_array_equal(np.load(tmp_path / "proba.npy"), clf.predict_proba(X))
