"""A library that leaves its host alone: importing jaxnn and calling its functions, ``fit``
included, changes no CPU affinity, environment variable, signal handler or ``jax.config``
value. Tuning the process is the command line's business (``jaxnn.cli``).

One fresh process records the four, imports every public module (all of jaxnn but
``jaxnn.cli`` and ``jaxnn.__main__``), trains, evaluates, checks gradients, saves and
restores a checkpoint and times a step, then prints what changed.
"""

import json

import pytest

from tests.helpers import run_script

# Prints one JSON line: {what: [changes]}, empty lists when the host is left alone.
SCRIPT = """
import importlib, json, os, pkgutil, signal, tempfile, types
import jax
import numpy as np


def handlers():
    found = {}
    for number in signal.valid_signals():
        try:
            found[getattr(number, "name", str(number))] = signal.getsignal(number)
        except (OSError, ValueError):  # not readable here
            pass
    return found


def host():
    affinity = getattr(os, "sched_getaffinity", None)
    return {
        "affinity": {"cpus": sorted(affinity(0)) if affinity else None},
        "environ": dict(os.environ),
        "signals": handlers(),
        "jax.config": dict(jax.config.values),
    }


def changes(before, after):
    return [
        f"{key}: {before.get(key, '(unset)')!r} -> {after.get(key, '(unset)')!r}"
        for key in sorted(set(before) | set(after), key=str)
        if before.get(key, "(unset)") != after.get(key, "(unset)")
    ]


def public_modules(package):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name in ("jaxnn.cli", "jaxnn.__main__"):  # the process's own business
            continue
        module = importlib.import_module(info.name)
        yield info.name
        if info.ispkg:
            yield from public_modules(module)


before = host()
import jaxnn

modules = list(public_modules(jaxnn))
from jaxnn import bench, checkpoint, optim, train

net = jaxnn.Network((4, 5, 3), ("tanh", "softmax"), "cross_entropy")
rng = np.random.default_rng(0)
X = rng.normal(size=(4, 24)).astype(np.float32)
Y = np.eye(3, dtype=np.float32)[:, rng.integers(0, 3, 24)]
data = types.SimpleNamespace(
    X_train=X[:, :16], Y_train=Y[:, :16], X_test=X[:, 16:], Y_test=Y[:, 16:]
)
optimizer = optim.adam(1e-2)
result = train.fit(net, optimizer, data, 2, 8, jax.random.key(0))
train.evaluate(result.params, data.X_test, data.Y_test, net)
params = result.params
jaxnn.check_gradients(jaxnn.backprop, jaxnn.cost, params, X, Y, net)
jaxnn.taylor_test(jaxnn.backprop, jaxnn.cost, params, X, Y, net)
with tempfile.TemporaryDirectory() as directory:
    with checkpoint.Checkpoints(directory) as saved:
        saved.save(2, result.params, result.opt_state)
        saved.wait()
        saved.restore(result.params, result.opt_state)
bench.run_benchmark(
    (4,), ("numpy",), 1, target_s=0.0, sizes=(4, 5, 3), matmul_sizes=(8,), settle_s=0.0
)
after = host()
print(json.dumps({
    "modules": modules,
    **{what: changes(before[what], after[what]) for what in before},
}))
"""


@pytest.mark.slow
def test_importing_and_calling_jaxnn_leaves_the_host_alone():
    result = run_script(SCRIPT)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    modules = report.pop("modules")
    assert {"jaxnn.train", "jaxnn.verify", "jaxnn.bench"} <= set(modules), modules
    assert not any(name.startswith("jaxnn.cli") for name in modules)
    changed = {what: diff for what, diff in report.items() if diff}
    assert not changed, json.dumps(changed, indent=1)
