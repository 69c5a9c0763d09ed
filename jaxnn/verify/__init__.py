"""Verifying gradients: ``check_gradients``, ``taylor_test``, ``locate_fault``, the verify matrix.

Four tools, from the most general to the most specific:

* ``check_gradients(grad_fn, cost_fn, params, *args, **kwargs)`` (``gradients``)
  compares any hand-written gradient with ``jax.grad(cost_fn)`` (and, optionally,
  central finite differences), leaf by leaf, naming each leaf's worst entry and
  accepting a difference at a kink that lies between the one-sided derivatives
  (``kinks``); with ``directions=k`` it compares k random directions per leaf with
  ``jax.jvp`` and central differences instead (``directional``), for networks of
  any size;
* ``taylor_test(grad_fn, cost_fn, params, *args, **kwargs)`` (``taylor``)
  measures the order at which |C(p + hv) - C(p) - h <g, v>| shrinks: 2 for a
  right gradient, 1 for a wrong one, with no tolerance to choose;
* ``locate_fault(params, X, Y, net, backward_fn)`` (``faults``) compares every
  layer's delta^[l] = dC/dZ^[l] of a jaxnn-style backward pass with ``jax.vjp``
  and names the layer and equation where a wrong formula enters;
* ``run_matrix()`` (``matrix``, its computation in ``matrix_program``) runs
  jaxnn's own backprop over every (hidden activation, output and loss, depth,
  fused) configuration at test points chosen to be hard (kinks, saturation), in
  float64 and float32; ``format_table`` renders it, ``format_summary``
  (``summary``) condenses it to one screen; ``check_weight_decay``
  (``weight_decay``) checks (BP4-L2) for every head beside it.

Every report has a ``status``: ok only when every float entry was tested and
agreed, fail (naming the leaf and entry, nan and inf included), or
inconclusive (nothing could be tested), which is not ok (``verdicts``).

Errors are measured per leaf as ``measures`` defines them; reports render as a
text table (``str``), HTML (``_repr_html_``) and a plain dict (``as_dict``) by
``render``. Parameters may hold non-array leaves (``trees``).

Nothing in this package prints; ``jaxnn.cli`` prints what it returns.
"""

from jaxnn.verify.faults import FaultReport as FaultReport
from jaxnn.verify.faults import LayerCheck as LayerCheck
from jaxnn.verify.faults import locate_fault as locate_fault
from jaxnn.verify.faults import reference_deltas as reference_deltas
from jaxnn.verify.gradients import GradientReport as GradientReport
from jaxnn.verify.gradients import LeafCheck as LeafCheck
from jaxnn.verify.gradients import WeakCheckWarning as WeakCheckWarning
from jaxnn.verify.gradients import check_gradients as check_gradients
from jaxnn.verify.gradients import finite_difference_gradient as finite_difference_gradient
from jaxnn.verify.kinks import KINKS as KINKS
from jaxnn.verify.kinks import KinkEntries as KinkEntries
from jaxnn.verify.matrix import format_table as format_table
from jaxnn.verify.matrix import run_matrix as run_matrix
from jaxnn.verify.measures import Errors as Errors
from jaxnn.verify.measures import Worst as Worst
from jaxnn.verify.measures import errors as errors
from jaxnn.verify.summary import format_summary as format_summary
from jaxnn.verify.taylor import LeafOrder as LeafOrder
from jaxnn.verify.taylor import TaylorReport as TaylorReport
from jaxnn.verify.taylor import taylor_test as taylor_test
from jaxnn.verify.weight_decay import check_weight_decay as check_weight_decay

__all__ = [
    "KINKS",
    "Errors",
    "FaultReport",
    "GradientReport",
    "KinkEntries",
    "LayerCheck",
    "LeafCheck",
    "LeafOrder",
    "TaylorReport",
    "WeakCheckWarning",
    "Worst",
    "check_gradients",
    "check_weight_decay",
    "errors",
    "finite_difference_gradient",
    "format_summary",
    "format_table",
    "locate_fault",
    "reference_deltas",
    "run_matrix",
    "taylor_test",
]
