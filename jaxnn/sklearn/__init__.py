"""scikit-learn estimators trained by jaxnn: ``MLPClassifier`` and ``MLPRegressor``.

Drop-in replacements for ``sklearn.neural_network``'s (the same parameters, fitted
attributes and methods; see docs/sklearn.md), whose gradients are jaxnn's
hand-derived backpropagation and whose whole fit is one compiled program. Needs
scikit-learn (``pip install "jaxnn[sklearn]"``).
"""

from jaxnn.sklearn.estimators import MLPClassifier, MLPRegressor

__all__ = ["MLPClassifier", "MLPRegressor"]
