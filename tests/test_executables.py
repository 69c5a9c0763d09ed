"""``jaxnn.executables``: compiled programs kept whole on disk, and fit's use of them."""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import cpu_threads, executables, optim, parallel, train
from jaxnn.executables import ExecutableCache
from jaxnn.network import Network
from tests.test_train import toy_data


def traced(log):
    """A function that records each trace of it in ``log``."""

    def f(x, w):
        log.append(1)
        return jnp.tanh(w @ x).sum(axis=0), x * 2

    return f


ARGS = (jnp.arange(12.0).reshape(3, 4) / 10, jnp.ones((5, 3)))


def unique(tmp_path) -> str:
    """A program name no earlier process used: a program that JAX's compilation
    cache (on in some test processes) already holds is run but not stored."""
    return f"f {tmp_path}"


def test_a_second_cache_loads_the_program_without_tracing_it(tmp_path):
    name = unique(tmp_path)
    log = []
    first = ExecutableCache(str(tmp_path), recipe="r")
    got = first.compile(jax.jit(traced(log)), ARGS, name=name)(*ARGS)
    assert (first.misses, first.hits, len(log)) == (1, 0, 1)
    assert len(list(tmp_path.glob("*.exe"))) == 1
    second = ExecutableCache(str(tmp_path), recipe="r")  # as a new process would
    again = second.compile(traced(log), ARGS, name=name)(*ARGS)
    assert (second.misses, second.hits, len(log)) == (0, 1, 1)  # loaded, not traced
    expected = jax.jit(traced([]))(*ARGS)
    for a, b, c in zip(*map(jax.tree.leaves, (got, again, expected)), strict=True):
        np.testing.assert_array_equal(a, c)
        np.testing.assert_array_equal(b, c)
    # the same program asked again in this process: kept in memory, not reloaded
    kept = second.compile(traced(log), ARGS, name=name)
    assert second.compile(traced(log), ARGS, name=name) is kept
    assert second.hits == 1


def test_the_key_covers_name_recipe_argument_types_source_and_flags(tmp_path, monkeypatch):
    cache = ExecutableCache(str(tmp_path), recipe="adam 0.001")
    key = cache.key("f", ARGS)
    assert key == ExecutableCache(str(tmp_path), recipe="adam 0.001").key("f", ARGS)
    assert cache.key("g", ARGS) != key
    assert ExecutableCache(str(tmp_path), recipe="adam 0.01").key("f", ARGS) != key
    assert cache.key("f", (ARGS[0][:, :3], ARGS[1])) != key  # a shape
    assert cache.key("f", (ARGS[0].astype(jnp.float32), ARGS[1])) != key  # a dtype
    assert cache.key("f", (ARGS[0], (ARGS[1],))) != key  # the tree structure
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=false")
    assert cache.key("f", ARGS) != key
    monkeypatch.delenv("XLA_FLAGS")
    assert cache.key("f", ARGS, compiler_options={"xla_backend_optimization_level": 1}) != key
    monkeypatch.setattr(cpu_threads, "pool_threads", lambda: 99)  # XLA compiles for its pool
    assert cache.key("f", ARGS) != key
    monkeypatch.undo()
    monkeypatch.setattr(executables, "source_digest", lambda: "another jaxnn")
    assert cache.key("f", ARGS) != key


def test_compiler_options_reach_xla(tmp_path):
    cache = ExecutableCache(str(tmp_path), recipe="r")
    name = unique(tmp_path)
    # an option XLA does not know fails only if it is passed on to XLA
    with pytest.raises(jax.errors.JaxRuntimeError, match="xla_no_such"):
        cache.compile(traced([]), ARGS, name=name, compiler_options={"xla_no_such": 1})
    options = {"xla_backend_optimization_level": 1}
    cache.compile(traced([]), ARGS, name=name, compiler_options=options)
    again = ExecutableCache(str(tmp_path), recipe="r")
    again.compile(traced([]), ARGS, name=name, compiler_options=options)
    assert (again.hits, again.misses) == (1, 0)  # stored under the options' key
    again.compile(traced([]), ARGS, name=name)
    assert (again.hits, again.misses) == (1, 1)  # without them: another program


def test_fingerprint_and_types_gives_eval_shape_types():
    opt = optim.adam(1e-3)
    params = [{"W": jnp.ones((3, 2)), "b": jnp.zeros((3, 1))}]
    digest, types = executables.fingerprint_and_types(opt.init, params)
    assert digest == executables.fingerprint(opt.init, params)
    assert digest != executables.fingerprint(optim.sgd(1e-3).init, params)
    assert types == jax.eval_shape(opt.init, params)


def test_fit_start_compiled_for_speed_gives_make_init_bits():
    """fit compiles its start with INIT_COMPILER_OPTIONS (LLVM level 1: a program run
    once); its params and optimizer state equal make_init's default compile, bit for bit,
    in float64 and float32, for He (relu) and Glorot (softmax, sigmoid) layers."""
    key = jax.random.key(7)
    for x64 in (True, False):
        with jax.enable_x64(x64):
            net = Network((64, 256, 128, 10), ("relu", "sigmoid", "softmax"), "cross_entropy")
            init = train.make_init(net, optim.adam(1e-3))
            fast = init.lower(key).compile(train.INIT_COMPILER_OPTIONS)(key)
            default = init.lower(key).compile()(key)
            leaves = jax.tree.leaves(fast)
            assert leaves[0].dtype == (jnp.float64 if x64 else jnp.float32)
            for a, b in zip(leaves, jax.tree.leaves(default), strict=True):
                np.testing.assert_array_equal(a, b)


def test_source_digest_changes_with_any_module(tmp_path, monkeypatch):
    package = tmp_path / "jaxnn"
    (package / "sub").mkdir(parents=True)
    (package / "a.py").write_text("x = 1\n")
    (package / "sub" / "b.py").write_text("y = 2\n")
    monkeypatch.setattr(executables, "__file__", str(package / "executables.py"))
    digest = executables.source_digest.__wrapped__
    before = digest()
    (package / "sub" / "b.py").write_text("y = 3\n")
    assert digest() != before


def test_a_damaged_file_is_compiled_afresh_and_rewritten(tmp_path):
    name = unique(tmp_path)
    cache = ExecutableCache(str(tmp_path), recipe="r")
    cache.compile(traced([]), ARGS, name=name)
    (path,) = tmp_path.glob("*.exe")
    good = path.read_bytes()
    for damaged in (good[:-100], good[:-1] + bytes([good[-1] ^ 1]), b"not an executable"):
        path.write_bytes(damaged)
        log = []
        again = ExecutableCache(str(tmp_path), recipe="r")
        out = again.compile(traced(log), ARGS, name=name)(*ARGS)
        assert (again.misses, again.hits, len(log)) == (1, 0, 1)
        np.testing.assert_array_equal(out[0], jax.jit(traced([]))(*ARGS)[0])
        reloaded = ExecutableCache(str(tmp_path), recipe="r")
        reloaded.compile(traced([]), ARGS, name=name)
        assert reloaded.hits == 1  # rewritten whole


def test_only_the_newest_entries_are_kept(tmp_path):
    name = unique(tmp_path)
    cache = ExecutableCache(str(tmp_path), recipe="r", max_entries=2)
    paths = []
    for n in (2, 3, 4):
        args = (jnp.ones((3, n)), jnp.ones((5, 3)))
        cache.compile(traced([]), args, name=name)
        paths.append(cache.path(name, args))
        os.utime(paths[-1], (n, n))  # distinct ages, oldest first
    assert sorted(str(p) for p in tmp_path.glob("*.exe")) == sorted(paths[1:])


def test_fit_loads_its_programs_and_gets_the_same_bits(tmp_path):
    net, ds, _ = toy_data("softmax")
    opt, key = optim.adam(1e-2), jax.random.key(3)
    plain = train.fit(net, opt, ds, 3, 8, key)
    first = ExecutableCache(str(tmp_path), recipe=unique(tmp_path))
    stored = train.fit(net, opt, ds, 3, 8, key, executables=first)
    assert (first.misses, first.hits) == (2, 0)  # the start and the epoch
    second = ExecutableCache(str(tmp_path), recipe=unique(tmp_path))
    loaded = train.fit(net, opt, ds, 3, 8, key, executables=second)
    assert (second.misses, second.hits) == (0, 2)
    # resumed from the loaded run's state: the epoch program again (the start is not needed)
    half = train.fit(net, opt, ds, 2, 8, key, executables=second)
    resumed = train.fit(
        net, opt, ds, 3, 8, key, params=half.params, opt_state=half.opt_state,
        start_epoch=2, history=half.history, executables=second,
    )  # fmt: skip
    for run in (stored, loaded, resumed):
        assert run.history == plain.history
        for a, b in zip(jax.tree.leaves(run[:2]), jax.tree.leaves(plain[:2]), strict=True):
            np.testing.assert_array_equal(a, b)


def test_fit_on_a_mesh_does_not_use_the_cache(tmp_path):
    net, ds, _ = toy_data("softmax")
    cache = ExecutableCache(str(tmp_path), recipe="sgd")
    mesh = parallel.make_mesh(1)
    train.fit(net, optim.sgd(0.1), ds, 1, 8, jax.random.key(0), mesh=mesh, executables=cache)
    assert (cache.misses, cache.hits) == (0, 0) and not any(tmp_path.iterdir())


# JAX's compilation cache is decided once per process: each run below is a process.
STORE = """
import sys
import jax
import jax.numpy as jnp
jax.config.update("jax_compilation_cache_dir", sys.argv[1])
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
from jaxnn.executables import ExecutableCache

def f(x):
    return jnp.cumsum(jnp.tanh(x) @ x.T, axis=1)[:, ::2]

x = jnp.arange(16.0).reshape(4, 4) / 7
cache = ExecutableCache(sys.argv[2], recipe="r")
out = cache.compile(f, (x,), name="f")(x)
assert bool(jnp.all(out == jax.jit(f)(x)))
print(cache.hits, cache.misses)
"""


def test_a_program_compiled_again_beside_jax_cache_is_stored_sound(tmp_path):
    """On the CPU, an executable that JAX's cache loaded serializes without its kernels
    (jax 0.10.2): stored, its copy would fail at its first call in the next process."""
    jax_dir, ours = tmp_path / "jax", tmp_path / "ours"

    def run():
        argv = [sys.executable, "-c", textwrap.dedent(STORE), str(jax_dir), str(ours)]
        result = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout.split()

    assert run() == ["0", "1"]  # compiled, stored (JAX's cache holds it too)
    assert run() == ["1", "0"]  # loaded, and it runs
    (path,) = ours.glob("*.exe")
    path.unlink()  # JAX's cache still holds everything compiled so far
    assert run() == ["0", "1"]  # compiled afresh, not taken from JAX's cache ...
    assert run() == ["1", "0"]  # ... so its stored copy runs


def test_an_executable_from_jax_cache_is_not_stored(tmp_path, monkeypatch):
    compile_ = jax.stages.Lowered.compile

    def from_jax_cache(self, *args, **kwargs):  # what JAX reports for a cache hit
        jax.monitoring.record_event("/jax/compilation_cache/cache_hits")
        return compile_(self, *args, **kwargs)

    monkeypatch.setattr(jax.stages.Lowered, "compile", from_jax_cache)
    cache = ExecutableCache(str(tmp_path), recipe="r")
    out = cache.compile(traced([]), ARGS, name=unique(tmp_path))(*ARGS)
    np.testing.assert_array_equal(out[0], jax.jit(traced([]))(*ARGS)[0])
    assert cache.misses == 1 and not list(tmp_path.glob("*.exe"))


def test_a_transformed_function_is_compiled_as_it_is(tmp_path):
    """Only what the function computes counts: jax.grad of f is not f."""

    def f(x):
        return jnp.sum(x**3)

    x = jnp.arange(3.0)
    cache = ExecutableCache(str(tmp_path), recipe="r")
    np.testing.assert_array_equal(
        cache.compile(jax.grad(f), (x,), name=unique(tmp_path))(x), 3 * x**2
    )


def test_jax_settings_of_the_calling_thread_count(tmp_path):
    """Keys and tracing happen in the caller's thread, under its JAX contexts."""
    cache = ExecutableCache(str(tmp_path), recipe="r")
    key = cache.key("f", ARGS)
    with jax.default_matmul_precision("bfloat16"):
        assert cache.key("f", ARGS) != key
    net, ds, _ = toy_data("softmax")
    with jax.enable_x64(False):  # the tests run in float64; this fit in float32
        opt = optim.adam(1e-2)
        plain = train.fit(net, opt, ds, 2, 8, jax.random.key(1))
        kept = train.fit(net, opt, ds, 2, 8, jax.random.key(1), executables=cache)
    assert jax.tree.leaves(kept.params)[0].dtype == jnp.float32
    assert kept.history == plain.history


def test_fit_names_the_optimizer_whatever_the_recipe(tmp_path):
    net, ds, _ = toy_data("softmax")
    key = jax.random.key(2)
    for lr in (1e-2, 1e-1):  # one careless recipe for both
        cache = ExecutableCache(str(tmp_path), recipe="adam")
        kept = train.fit(net, optim.adam(lr), ds, 2, 8, key, executables=cache)
        assert (cache.hits, cache.misses) == (0, 2)  # nothing of the other optimizer loaded
        assert kept.history == train.fit(net, optim.adam(lr), ds, 2, 8, key).history


def test_a_program_that_cannot_be_stored_still_runs(tmp_path):
    def f(x):
        jax.debug.callback(lambda v: None, x)  # a host callback: not serializable
        return x * 2

    x = jnp.arange(3.0)
    cache = ExecutableCache(str(tmp_path), recipe="r")
    np.testing.assert_array_equal(cache.compile(f, (x,), name=unique(tmp_path))(x), 2 * x)
    assert not list(tmp_path.glob("*.exe"))
    assert jax.config.values["jax_persistent_cache_min_compile_time_secs"] != float("inf")


def test_a_directory_others_may_write_is_neither_read_nor_written(tmp_path):
    name = unique(tmp_path)
    ExecutableCache(str(tmp_path), recipe="r").compile(traced([]), ARGS, name=name)
    (path,) = tmp_path.glob("*.exe")
    tmp_path.chmod(0o777)
    try:
        log = []
        open_to_all = ExecutableCache(str(tmp_path), recipe="r")
        open_to_all.compile(traced(log), ARGS, name=name)
        assert (open_to_all.hits, open_to_all.misses, len(log)) == (0, 1, 1)  # not loaded
        path.unlink()
        open_to_all = ExecutableCache(str(tmp_path), recipe="r")
        open_to_all.compile(traced([]), ARGS, name=name)
        assert not list(tmp_path.glob("*.exe"))  # nor written
    finally:
        tmp_path.chmod(0o700)
