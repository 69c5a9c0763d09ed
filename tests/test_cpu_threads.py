"""``jaxnn.cli.cpu_threads``: XLA's CPU pool sized before JAX's backends start.

The pool is sized once per process, so the checks run in fresh subprocesses.
"""

import functools
import json
import os

import jax
import pytest

from jaxnn import data
from jaxnn.cli import cpu_threads
from jaxnn.network import Network
from tests.helpers import run_script

LINUX = hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")
CORES = len(os.sched_getaffinity(0)) if LINUX else 1

# A small epoch in a fresh process whose pool has argv[1] threads ("none": XLA's
# default), its threads looked for under the name argv[2] if given; prints the pool's
# size, the affinities of its threads and the epoch's results as hex.
EPOCH = """
import json, os, sys
import numpy as np
from jaxnn.cli import cpu_threads
threads = None if sys.argv[1] == "none" else int(sys.argv[1])
if len(sys.argv) > 2:
    cpu_threads.POOL_THREAD = sys.argv[2]
pool = cpu_threads.start_backends(threads)
import jax
from jaxnn import network, optim, steps
net = network.Network((64, 32, 10), ("relu", "softmax"), "cross_entropy")
opt = optim.adam(1e-3)
key = jax.random.key(0)
params = network.init_params(key, net)
rng = np.random.default_rng(0)
X = rng.standard_normal((64, 256)).astype(np.float32)
Y = np.eye(10, dtype=np.float32)[:, rng.integers(0, 10, 256)]
out = steps.make_epoch(net, opt, 16)(params, opt.init(params), X, Y, key)
affinities = sorted({
    tuple(sorted(os.sched_getaffinity(t))) for t in map(int, os.listdir("/proc/self/task"))
})
bits = [np.asarray(x).tobytes().hex() for x in jax.tree.leaves(out)]
print(json.dumps({"pool": pool, "affinities": affinities, "bits": bits}))
"""


@functools.cache  # XLA's default pool serves two tests
def run_epoch(threads, *name: str) -> dict:
    result = run_script(EPOCH, str(threads), *name)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="CPU affinity is Linux's")
def test_one_thread_pool_gives_the_same_bits_and_leaves_no_thread_pinned():
    one, default = run_epoch(1), run_epoch("none")
    assert one["pool"] == 1
    assert default["pool"] == CORES  # XLA's default: one per core
    everywhere = [sorted(os.sched_getaffinity(0))]
    assert one["affinities"] == everywhere  # every thread, the pool's too: all cores
    assert one["bits"] == default["bits"]  # the same arithmetic


@pytest.mark.slow
@pytest.mark.skipif(not LINUX, reason="CPU affinity is Linux's")
def test_a_pool_under_another_name_degrades_to_a_count_of_0():
    """If XLA renamed its pool's threads (the name is undocumented), the pool is not
    found: start_backends says 0 and crashes not, no thread stays pinned, the bits
    are XLA's."""
    renamed, default = run_epoch(1, "no-such-thread"), run_epoch("none")
    assert renamed["pool"] == 0 and default["pool"] == CORES
    assert renamed["affinities"] == [sorted(os.sched_getaffinity(0))]
    assert renamed["bits"] == default["bits"]


def test_after_the_backends_started_it_changes_nothing():
    jax.devices()  # started by this test process (its pool: however an earlier test sized it)
    before = cpu_threads.pool_threads()
    assert before >= 1 or not LINUX
    assert cpu_threads.start_backends(1) == before
    assert cpu_threads.pool_threads() == before


@pytest.mark.parametrize("threads", [0, -1, 1.5, True, "1"])
def test_bad_thread_counts_raise_before_anything_starts(threads):
    with pytest.raises(ValueError, match=r"threads must be a positive int or None, got"):
        cpu_threads.start_backends(threads)


def test_one_thread_for_small_steps_only():
    digits = data.load("digits", None).network((256, 128), "relu")  # jaxnn train's default
    flops = 6 * 16 * (64 * 256 + 256 * 128 + 128 * 10)
    assert cpu_threads.step_flops(digits, 16) == flops  # 4.8 MFLOP
    assert cpu_threads.threads_for(digits, 16) == 1
    assert cpu_threads.threads_for(digits, 128) is None  # 39 MFLOP
    wide = Network((784, 512, 512, 10), ("relu", "relu", "softmax"), "cross_entropy")
    assert cpu_threads.threads_for(wide, 32) is None
    limit = cpu_threads.ONE_THREAD_MAX_FLOPS
    assert cpu_threads.threads_for(digits, int(limit // (flops / 16))) == 1
    assert cpu_threads.threads_for(digits, int(limit // (flops / 16)) + 1) is None
