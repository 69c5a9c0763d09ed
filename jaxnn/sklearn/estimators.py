"""``MLPClassifier`` and ``MLPRegressor``: scikit-learn's estimators, trained by jaxnn.

The parameters are scikit-learn's (``sklearn.neural_network``), with the same names,
defaults and meaning where jaxnn has the same thing; docs/sklearn.md maps each one.
A fit is one compiled program (``jaxnn.sklearn.program``): the hand gradient
(BP1-W), BP2-BP4 and (BP4-L2) of the weighted cost (C-W) with scikit-learn's L2
term (C-L2), scikit-learn's batches, stopping rules and initialisation. The fitted
state is NumPy (``coefs_``, ``intercepts_``), so an estimator pickles without JAX
objects, and ``predict`` is a NumPy forward pass in float64, as scikit-learn's:
its rows do not depend on which other rows share the call.

Training runs in float32, or in float64 when JAX's x64 mode is on and X is float64;
the estimators never change ``jax.config``.
"""

import dataclasses
import itertools
import warnings

import jax
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from jaxnn.network import Network
from jaxnn.sklearn import params, program

__all__ = ["MLPClassifier", "MLPRegressor"]


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, checks, the fit."""

    def __init__(
        self,
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        gradients="hand",
    ):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.gradients = gradients

    # -- checks, before any math -------------------------------------------------------

    def _hidden(self) -> tuple[int, ...]:
        return params.hidden_sizes(self.hidden_layer_sizes)

    def _check_params(self) -> None:
        params.check(self.get_params())

    def _validate(self, X, y, reset: bool):
        X, y = validate_data(
            self,
            X,
            y,
            accept_sparse=["csr", "csc"],
            multi_output=True,
            dtype=(np.float64, np.float32),
            reset=reset,
            y_numeric=not isinstance(self, ClassifierMixin),
        )
        if hasattr(X, "toarray"):
            X = X.toarray()
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        return X, y

    # -- the fit -----------------------------------------------------------------------

    def _dtype(self, X) -> np.dtype:
        x64 = jax.config.jax_enable_x64 and X.dtype == np.float64
        return np.dtype(np.float64 if x64 else np.float32)

    def _network(self, n_x: int, n_out: int) -> Network:
        hidden = self._hidden()
        act, loss = params.HEADS[self.out_activation_]
        acts = (params.ACTIVATIONS[self.activation][0],) * len(hidden) + (act,)
        return Network((n_x, *hidden, n_out), acts, loss)

    def _fit(self, X, Y, incremental: bool):
        """Train on ``X`` ``(n, n_x)`` and targets ``Y`` ``(n, n_out)``; see the classes."""
        first = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        if self.early_stopping and incremental:
            raise ValueError("partial_fit does not support early_stopping=True")
        dtype = self._dtype(X)
        n_x, n_out = X.shape[1], Y.shape[1]
        net = self._network(n_x, n_out)
        if not first and net.sizes != self._sizes():
            raise ValueError(
                f"the network's layer sizes changed from {self._sizes()} to {net.sizes}: "
                "fit again with warm_start=False"
            )
        self._random_state = check_random_state(self.random_state)  # every call, as theirs
        if first:
            params = _init(self._random_state, net.sizes, self.activation, dtype)
            self.t_, self.loss_curve_ = 0, []
            self._progress = None
            if self.early_stopping:
                self.validation_scores_, self.best_validation_score_ = [], -np.inf
                self.best_loss_ = None
            else:
                self.validation_scores_ = self.best_validation_score_ = None
                self.best_loss_ = np.inf
        else:
            params = self._params(dtype)
        X_train, Y_train, X_val, Y_val = self._split(X, Y)
        m = X_train.shape[0]
        n_pad = program.padded_size(m)
        total = 1 if incremental else self.max_iter
        chunk = max(1, min(total, program.ORDER_ENTRIES // n_pad))
        static = self._static(net, m, n_pad, chunk)
        hyper = self._hyper(dtype, chunk)
        opt_state = None
        if incremental and getattr(self, "_opt_leaves", None) is not None:
            opt_state = self._opt_state(static, hyper, params)
        if opt_state is None:  # a new optimizer, as scikit-learn's fit (not partial_fit)
            opt_state = program.zero_state(static, hyper, params)
        sets = (_pad(X_train, n_pad, dtype), _pad(Y_train, n_pad, dtype), m)
        if self.early_stopping:
            rows = program.padded_size(X_val.shape[0])
            sets += (_pad(X_val, rows, dtype), _pad(Y_val, rows, dtype), X_val.shape[0])
        else:
            sets += (np.zeros((1, n_x), dtype), np.zeros((1, n_out), dtype), 1)
        state = (params, opt_state, params, self._start_progress(dtype, not incremental))
        run = _Run([], [], False, True)
        order = np.arange(m)
        while len(run.losses) < total and not run.stopped and run.finite:
            epochs = min(chunk, total - len(run.losses))
            state, order = self._run_chunk(
                static, hyper._replace(epochs=epochs), state, sets, order, run
            )
        self._finish(state, run, m, incremental)
        return self

    def _static(self, net: Network, m: int, n_pad: int, epochs: int) -> program.Static:
        B = self._batch(m)
        batch = n_pad if B >= m else B  # a whole-set batch: its shape follows the padding
        return program.Static(
            net,
            self.solver,
            bool(self.nesterovs_momentum),
            self.learning_rate if self.solver == "sgd" else "constant",  # scikit-learn's rule
            batch,
            -(-n_pad // batch),
            bool(self.shuffle),
            bool(self.early_stopping),
            self.gradients,
            program.capacity(epochs),
        )

    def _run_chunk(self, static, hyper, state, sets, order, run):
        """Up to ``hyper.epochs`` epochs in one call of the program; ``run`` gathers them."""
        X, Y, m, X_val, Y_val, m_val = sets
        epochs = int(hyper.epochs)
        if static.shuffle:
            drawn = self._random_state.get_state()
            orders = program.shuffled_orders(self._random_state, order, X.shape[0], epochs)
        else:
            orders = np.zeros((1, X.shape[0]), np.int32)
        result = jax.device_get(
            program.run_jit(static, hyper, *state, X, Y, m, X_val, Y_val, m_val, orders)
        )
        done = int(result.epochs)
        if static.shuffle:
            if done < epochs:  # leave the stream where scikit-learn's would be
                self._random_state.set_state(drawn)
                orders = program.shuffled_orders(self._random_state, order, X.shape[0], done)
            order = orders[done - 1, :m] if done else order
        run.losses.extend(float(x) for x in result.losses[:done])
        run.scores.extend(float(x) for x in result.scores[:done])
        run.stopped, run.finite = bool(result.stopped), bool(result.finite)
        state = (result.params, result.opt_state, result.best_params, result.progress)
        return state, order

    def _split(self, X, Y):
        if not self.early_stopping:
            return X, Y, None, None
        stratify = Y if isinstance(self, ClassifierMixin) and self.n_outputs_ == 1 else None
        if stratify is not None and Y.shape[1] == 1:
            stratify = Y[:, 0]
        X_train, X_val, Y_train, Y_val = train_test_split(
            X,
            Y,
            random_state=self._random_state,
            test_size=self.validation_fraction,
            stratify=stratify,
        )
        if X_val.shape[0] < 2:
            raise ValueError(
                "The validation set is too small. Increase 'validation_fraction' or the size "
                "of your dataset."
            )
        return X_train, Y_train, X_val, Y_val

    def _batch(self, m: int) -> int:
        if self.batch_size == "auto":
            return min(200, m)
        if self.batch_size > m:
            warnings.warn(
                "Got `batch_size` less than 1 or larger than sample size. It is going to be "
                "clipped",
                stacklevel=3,
            )
        return int(np.clip(self.batch_size, 1, m))

    def _hyper(self, dtype, epochs: int) -> program.Hyper:
        f = lambda x: np.asarray(x, dtype)
        return program.Hyper(
            f(self.learning_rate_init),
            f(self.alpha),
            f(self.beta_1),
            f(self.beta_2),
            f(self.epsilon),
            f(self.momentum),
            f(self.power_t),
            f(self.tol),
            np.int32(self.n_iter_no_change),
            np.int32(epochs),
        )

    def _start_progress(self, dtype, fresh_rate: bool) -> program.Progress:
        p = self._progress
        rate = self.learning_rate_init if (p is None or fresh_rate) else p["learning_rate"]
        best_loss = np.inf if self.best_loss_ is None else self.best_loss_
        best_score = -np.inf if self.best_validation_score_ is None else self.best_validation_score_
        return program.Progress(
            np.asarray(rate, dtype),
            np.asarray(best_loss, dtype),
            np.asarray(best_score, dtype),
            np.int32(0 if p is None else p["no_improvement"]),
            np.asarray(self.t_, dtype),
        )

    def _finish(self, state, run: "_Run", m: int, incremental: bool) -> None:
        params, opt_state, best_params, p = state
        epochs = len(run.losses)
        if not run.finite:
            raise ValueError(
                f"training diverged: the loss or a parameter became NaN or Inf in epoch "
                f"{len(self.loss_curve_) + epochs}; lower learning_rate_init (now "
                f"{self.learning_rate_init!r}) or scale the features"
            )
        self.loss_curve_ += run.losses
        self.n_iter_ = epochs
        self.t_ += epochs * m
        self.loss_ = run.losses[-1]
        self._progress = {
            "learning_rate": float(p.learning_rate),
            "no_improvement": int(p.no_improvement),
        }
        if self.early_stopping:
            self.validation_scores_ += run.scores
            self.best_validation_score_ = float(p.best_score)
            params = best_params
        else:
            self.best_loss_ = float(p.best_loss)
        self.coefs_ = [np.asarray(layer["W"]).T for layer in params]
        self.intercepts_ = [np.asarray(layer["b"])[:, 0] for layer in params]
        self._opt_leaves = [np.asarray(x) for x in jax.tree.leaves(opt_state)]
        self.n_layers_ = len(self.coefs_) + 1
        if self.verbose:  # scikit-learn's lines, after the run (one program) returns
            for i, loss in enumerate(run.losses):
                print(f"Iteration {i + 1}, loss = {loss:.8f}")
                if self.early_stopping:
                    print(f"Validation score: {run.scores[i]:f}")
        if not incremental and epochs == self.max_iter and not run.stopped:
            warnings.warn(
                f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) reached and the "
                "optimization hasn't converged yet.",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _sizes(self) -> tuple[int, ...]:
        return (self.coefs_[0].shape[0], *(c.shape[1] for c in self.coefs_))

    def _params(self, dtype) -> list:
        return [
            {"W": np.asarray(W.T, dtype), "b": np.asarray(b, dtype)[:, None]}
            for W, b in zip(self.coefs_, self.intercepts_, strict=True)
        ]

    def _opt_state(self, static, hyper, params):
        shape = jax.eval_shape(
            lambda p: program.make_optimizer(static, hyper).init(p),
            params,
        )  # the structure only
        leaves = self._opt_leaves
        if [x.shape for x in jax.tree.leaves(shape)] != [x.shape for x in leaves]:
            return None  # another solver's state: start afresh, as scikit-learn does
        return jax.tree.unflatten(jax.tree.structure(shape), leaves)

    # -- prediction ----------------------------------------------------------------------

    def _forward(self, X) -> np.ndarray:
        """The network's output for ``X`` ``(n, n_x)``, in float64 NumPy."""
        check_is_fitted(self, "coefs_")
        X = validate_data(self, X, accept_sparse=["csr", "csc"], reset=False)
        A = X.toarray() if hasattr(X, "toarray") else X
        A = np.asarray(A, np.float64)
        hidden = params.ACTIVATIONS[self.activation][1]
        for i, (W, b) in enumerate(zip(self.coefs_, self.intercepts_, strict=True)):
            Z = A @ np.asarray(W, np.float64) + np.asarray(b, np.float64)
            A = params.OUT[self.out_activation_](Z) if i == len(self.coefs_) - 1 else hidden(Z)
        return A

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _no_sample_weight(sample_weight) -> None:
    if sample_weight is not None:
        raise ValueError(
            "sample_weight is not offered by jaxnn.sklearn (scikit-learn's check that weights "
            "equal repeated rows cannot hold for shuffled minibatches); pass None"
        )


@dataclasses.dataclass
class _Run:
    """What the calls of one fit gathered: each epoch's loss and validation score."""

    losses: list
    scores: list
    stopped: bool  # the stopping rule ended the run
    finite: bool  # no loss or parameter became NaN or Inf


def _init(random_state, sizes, activation: str, dtype) -> list:
    """scikit-learn's initialisation (``_init_coef``), from the same random stream, so a
    ``random_state`` gives scikit-learn's starting weights: W^[l] and b^[l] ~ U(-r, r),
    r = sqrt(f / (n_in + n_out)), f = 2 for logistic hidden units and 6 otherwise."""
    factor = 2.0 if activation == "logistic" else 6.0
    params = []
    for n_in, n_out in itertools.pairwise(sizes):
        r = np.sqrt(factor / (n_in + n_out))
        coef = random_state.uniform(-r, r, (n_in, n_out))
        intercept = random_state.uniform(-r, r, n_out)
        params.append({"W": coef.T.astype(dtype), "b": intercept[:, None].astype(dtype)})
    return params


def _pad(A: np.ndarray, rows: int, dtype) -> np.ndarray:
    """``A`` with zero rows appended up to ``rows``, in ``dtype``."""
    out = np.zeros((rows, A.shape[1]), dtype)
    out[: A.shape[0]] = A
    return out


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """scikit-learn's ``MLPClassifier``, trained by jaxnn's hand-derived backpropagation.

    Two classes: one logistic unit with binary cross-entropy (F2); several: softmax
    with cross-entropy (F1); multilabel targets (an indicator matrix): one logistic
    unit per label. The parameters are ``sklearn.neural_network.MLPClassifier``'s
    (without ``solver="lbfgs"``), plus ``gradients``: ``"hand"`` (BP1-W, BP2-BP4,
    BP4-L2) or ``"autodiff"`` (``jax.value_and_grad`` of the same cost), and
    ``solver="rmsprop"`` (``beta_2`` its decay). See docs/sklearn.md.

    Example:
      >>> from sklearn.datasets import load_digits
      >>> X, y = load_digits(return_X_y=True)
      >>> clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=30, random_state=0)
      >>> clf.fit(X / 16, y).score(X / 16, y) > 0.95
      True
    """

    def fit(self, X, y):
        """Train on ``X`` ``(n_samples, n_features)`` and labels ``y`` ``(n_samples,)`` (any
        labels) or a multilabel indicator ``(n_samples, n_labels)``; returns self."""
        self._check_params()
        return self._fit(*self._targets(X, y, incremental=False), incremental=False)

    def partial_fit(self, X, y, sample_weight=None, classes=None):
        """One epoch on ``(X, y)``, continuing from the last call; ``classes`` (every label
        there will be) is required on the first call, as in scikit-learn.
        ``sample_weight`` is not offered (None only)."""
        self._check_params()
        _no_sample_weight(sample_weight)
        if not hasattr(self, "classes_"):
            multilabel = type_of_target(y).startswith("multilabel")
            if classes is None and not multilabel:
                raise ValueError("classes must be passed on the first call to partial_fit.")
            self._label_binarizer = LabelBinarizer().fit(y if multilabel else classes)
            self.classes_ = self._label_binarizer.classes_
        return self._fit(*self._targets(X, y, incremental=True), incremental=True)

    def _targets(self, X, y, incremental: bool):
        first = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate(X, y, reset=first)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer()
            self._label_binarizer.fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental and set(classes) != set(self.classes_):
                raise ValueError(
                    "warm_start can only be used where `y` has the same classes as in the "
                    f"previous call to fit. Previously got {self.classes_}, `y` has {classes}"
                )
            if len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError(
                    f"`y` has classes not in `self.classes_`. `self.classes_` has "
                    f"{self.classes_}. 'y' has {classes}."
                )
        Y = self._label_binarizer.transform(y).astype(np.float64)
        self.n_outputs_ = Y.shape[1]
        multiclass = self._label_binarizer.y_type_ == "multiclass"
        self.out_activation_ = "softmax" if multiclass else "logistic"
        return X, Y

    def predict(self, X) -> np.ndarray:
        """The predicted class of each row of ``X`` (an indicator row for multilabel)."""
        A = self._forward(X)
        if self.n_outputs_ == 1:
            A = A.ravel()
        return self._label_binarizer.inverse_transform(A)

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities ``(n_samples, n_classes)`` (each label's for multilabel)."""
        A = self._forward(X)
        if self.n_outputs_ == 1:
            A = A.ravel()
        return np.vstack([1 - A, A]).T if A.ndim == 1 else A

    def predict_log_proba(self, X) -> np.ndarray:
        """``log(predict_proba(X))``."""
        return np.log(self.predict_proba(X))

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """scikit-learn's ``MLPRegressor``, trained by jaxnn's hand-derived backpropagation.

    Identity outputs with the squared error (C1, F3), one or several targets; ``loss``
    is ``"squared_error"`` only (scikit-learn 1.9's first parameter; its ``"poisson"``
    is not offered). The gradient is of the seed's 1/2 sum over the outputs, as
    scikit-learn's; ``loss_curve_`` divides that term by the number of outputs, as
    scikit-learn reports it. Other parameters as ``MLPClassifier``'s.

    Example:
      >>> from sklearn.datasets import load_diabetes
      >>> from sklearn.preprocessing import scale
      >>> X, y = load_diabetes(return_X_y=True)
      >>> reg = MLPRegressor(hidden_layer_sizes=(32,), max_iter=200, random_state=0)
      >>> reg.fit(scale(X), y / y.std()).score(scale(X), y / y.std()) > 0.4
      True
    """

    def __init__(
        self,
        loss="squared_error",
        hidden_layer_sizes=(100,),
        activation="relu",
        *,
        solver="adam",
        alpha=0.0001,
        batch_size="auto",
        learning_rate="constant",
        learning_rate_init=0.001,
        power_t=0.5,
        max_iter=200,
        shuffle=True,
        random_state=None,
        tol=1e-4,
        verbose=False,
        warm_start=False,
        momentum=0.9,
        nesterovs_momentum=True,
        early_stopping=False,
        validation_fraction=0.1,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-8,
        n_iter_no_change=10,
        max_fun=15000,
        gradients="hand",
    ):
        self.loss = loss
        super().__init__(
            hidden_layer_sizes,
            activation,
            solver=solver,
            alpha=alpha,
            batch_size=batch_size,
            learning_rate=learning_rate,
            learning_rate_init=learning_rate_init,
            power_t=power_t,
            max_iter=max_iter,
            shuffle=shuffle,
            random_state=random_state,
            tol=tol,
            verbose=verbose,
            warm_start=warm_start,
            momentum=momentum,
            nesterovs_momentum=nesterovs_momentum,
            early_stopping=early_stopping,
            validation_fraction=validation_fraction,
            beta_1=beta_1,
            beta_2=beta_2,
            epsilon=epsilon,
            n_iter_no_change=n_iter_no_change,
            max_fun=max_fun,
            gradients=gradients,
        )

    def fit(self, X, y):
        """Train on ``X`` ``(n_samples, n_features)`` and targets ``y`` ``(n_samples,)`` or
        ``(n_samples, n_targets)``; returns self."""
        self._check_params()
        return self._fit(*self._targets(X, y, incremental=False), incremental=False)

    def partial_fit(self, X, y, sample_weight=None):
        """One epoch on ``(X, y)``, continuing from the last call. ``sample_weight`` is not
        offered (None only)."""
        self._check_params()
        _no_sample_weight(sample_weight)
        return self._fit(*self._targets(X, y, incremental=True), incremental=True)

    def _targets(self, X, y, incremental: bool):
        first = not hasattr(self, "coefs_") or (not self.warm_start and not incremental)
        X, y = self._validate(X, y, reset=first)
        Y = y.reshape(-1, 1) if y.ndim == 1 else y
        if not first and Y.shape[1] != self.n_outputs_:
            raise ValueError(
                f"y has {Y.shape[1]} targets, but this regressor was fitted with {self.n_outputs_}"
            )
        self.n_outputs_ = Y.shape[1]
        self.out_activation_ = "identity"
        return X, np.asarray(Y, np.float64)

    def predict(self, X) -> np.ndarray:
        """The predicted targets: ``(n_samples,)``, or ``(n_samples, n_targets)``."""
        A = self._forward(X)
        return A.ravel() if A.shape[1] == 1 else A

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags
