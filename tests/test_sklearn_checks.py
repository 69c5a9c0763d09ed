"""scikit-learn's own estimator checks on both estimators, with scikit-learn's settings
for its MLPs in its own test suite (``max_iter=100``, the default layers), and no
expected failures: NaN and Inf input, one sample, one class, row order and subsets,
read-only memory maps, sparse input, pickling, ``n_features_in_``, multilabel and
multi-output targets."""

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from jaxnn.sklearn import MLPClassifier, MLPRegressor

pytestmark = [
    pytest.mark.slow,
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning"),
]


@parametrize_with_checks([MLPClassifier(max_iter=100), MLPRegressor(max_iter=100)])
def test_scikit_learns_estimator_checks(estimator, check):
    check(estimator)
