"""Benchmarks: the training step beside its peers, and the whole job's time to accuracy.

Three modes; the first two run by ``jaxnn bench`` (``jaxnn.cli.bench``):

* the step benchmark (``run_benchmark``): the hand-derived step beside
  ``jax.grad``, PyTorch eager and NumPy, and the machine's matmul limit, all in
  one process, interleaved, as medians and ratios (``contenders``, ``timing``,
  ``report``);
* time to accuracy (``run_time_to_accuracy``): ``jaxnn train`` with an empty
  and with a filled compilation cache, scikit-learn's MLPClassifier and
  PyTorch eager, each in a process of its own, on the same split, network,
  batch size, epochs and optimizer (``time_to_accuracy``);
* jaxnn.sklearn beside scikit-learn (``sklearn_fits``, ``jaxnn bench --sklearn``):
  single fits and a grid search, swapping the import, each in a fresh process;
* per-example gradients (``per_example``, ``python scripts/bench_per_example.py``):
  the hand norms and clipped mean beside one ``backprop`` and ``vmap(grad)``.

Nothing here prints.
"""

from jaxnn.bench.contenders import BATCH_SIZES as BATCH_SIZES
from jaxnn.bench.contenders import CONTENDERS as CONTENDERS
from jaxnn.bench.contenders import SIZES as SIZES
from jaxnn.bench.contenders import data as data
from jaxnn.bench.contenders import network as network
from jaxnn.bench.contenders import numpy_step as numpy_step
from jaxnn.bench.contenders import step_flops as step_flops
from jaxnn.bench.report import check_outputs as check_outputs
from jaxnn.bench.report import markdown as markdown
from jaxnn.bench.report import write_outputs as write_outputs
from jaxnn.bench.sklearn_fits import run_sklearn as run_sklearn
from jaxnn.bench.time_to_accuracy import run_time_to_accuracy as run_time_to_accuracy
from jaxnn.bench.timing import dot_report as dot_report
from jaxnn.bench.timing import machine as machine
from jaxnn.bench.timing import matmul_peak as matmul_peak
from jaxnn.bench.timing import run_benchmark as run_benchmark

__all__ = [
    "BATCH_SIZES",
    "CONTENDERS",
    "SIZES",
    "check_outputs",
    "data",
    "dot_report",
    "machine",
    "markdown",
    "matmul_peak",
    "network",
    "numpy_step",
    "run_benchmark",
    "run_sklearn",
    "run_time_to_accuracy",
    "step_flops",
    "write_outputs",
]
