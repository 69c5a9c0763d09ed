"""jaxnn's gradient checks against the corpus of seeded bugs (tests/corpus.py).

check_gradients must flag every bug and no correct pass; locate_fault must do
the same and name the layer, quantity and equation where each bug enters. The
correct passes at kinks (relu'(0) = 1 or 1/2, leaky_relu'(0) = 0.01) must be
reported at a kink, not merely pass. scripts/gradient_checkers.py measures the
other checkers on the same corpus (docs/verifying.md).
"""

import pytest

from jaxnn.verify import check_gradients, locate_fault, taylor_test
from tests import corpus
from tests.helpers import sample


def test_the_corpus_is_large_and_varied():
    assert len(corpus.BUGS) >= 20 and len(corpus.CORRECT) >= 20
    assert {c.expect[2] for c in corpus.BUGS} == {"BP1", "BP2", "BP3", "BP4"}
    for cases in (corpus.BUGS, corpus.CORRECT):
        assert {c.point for c in cases} == {"random", "kink"}
        assert {c.dtype for c in cases} == {"float64", "float32"}
    names = [c.name for c in corpus.CASES]
    assert len(set(names)) == len(names)


@pytest.mark.parametrize("case", sample(corpus.CASES, 11), ids=lambda c: c.name)
def test_jaxnn_catches_every_bug_and_names_where_it_enters(case):
    params, X, Y = corpus.make_point(case)
    report = check_gradients(corpus.grad_fn(case), corpus.cost_fn(case.net), params, X, Y)
    fault = locate_fault(params, X, Y, case.net, corpus.jitted_backward(case))
    assert report.ok is not case.bug, str(report)
    assert fault.ok is not case.bug, str(fault)
    if case.bug:
        assert fault.fault == case.expect, str(fault)
        failing = {leaf.path for leaf in report.leaves if not leaf.ok}
        layer = case.expect[0]
        # the wrong quantity's own layer fails (BP3: b, BP4: W, BP1/BP2: both)
        assert any(p.startswith(f"[{layer - 1}]") for p in failing), str(report)
        assert not any(int(p[1]) + 1 > layer for p in failing), str(report)  # nothing above
    elif case.point == "kink" and "jax's" not in case.name:
        assert report.kinks > 0 and fault.kinks > 0, (str(report), str(fault))


KINK_CASES = [c for c in corpus.CASES if c.point == "kink"]


@pytest.mark.slow
@pytest.mark.parametrize("case", sample(KINK_CASES, 3), ids=lambda c: c.name)
def test_directional_and_taylor_modes_judge_kinks_right(case):
    """At a kink, where a random direction crosses several non-differentiable points,
    the directional mode and the Taylor test still flag every bug (kink-only bugs
    included) and accept every correct convention (relu'(0) in {0, 1/2, 1},
    leaky_relu'(0) in {0.01, 1}), reporting the direction as at a kink instead."""
    params, X, Y = corpus.make_point(case)
    grad, cost = corpus.grad_fn(case), corpus.cost_fn(case.net)
    directional = check_gradients(grad, cost, params, X, Y, directions=4)
    taylor = taylor_test(grad, cost, params, X, Y)
    assert directional.ok is not case.bug, str(directional)
    assert taylor.ok is not case.bug, str(taylor)
