"""``jaxnn.program_cache``: fit's programs kept on disk with ``jax.export``, no pickle."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnn import optim, program_cache, train
from jaxnn.program_cache import ProgramCache, fingerprint
from tests.helpers import run_script
from tests.test_train import toy_data


def traced(log):
    """A function of a flat list of arrays that records each trace of it in ``log``."""

    def f(x, w):
        log.append(1)
        return [jnp.tanh(w @ x).sum(axis=0), x * 2]

    return f


ARGS = [jnp.arange(12.0).reshape(3, 4) / 10, jnp.ones((5, 3))]


def compile_one(cache, log, name="f"):
    [program] = cache.compile_many([(jax.jit(traced(log)), ARGS, name)])
    return program


def assert_same(a, b):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_a_second_cache_loads_the_program_without_tracing_it(tmp_path):
    log = []
    first = ProgramCache(str(tmp_path), recipe="r")
    got = compile_one(first, log)(*ARGS)
    assert (first.misses, first.hits, len(log)) == (1, 0, 1)
    assert len(list(tmp_path.glob("*.jaxexport"))) == 1
    second = ProgramCache(str(tmp_path), recipe="r")  # as a new process would
    again = compile_one(second, log)(*ARGS)
    assert (second.misses, second.hits, len(log)) == (0, 1, 1)  # loaded, not traced
    assert_same(got, jax.jit(traced([]))(*ARGS))
    assert_same(again, got)
    kept = compile_one(second, log)
    assert compile_one(second, log) is kept and second.hits == 1  # in memory, not reloaded


def test_files_hold_no_pickle_and_the_library_never_imports_it(tmp_path):
    compile_one(ProgramCache(str(tmp_path)), [])
    [path] = tmp_path.glob("*.jaxexport")
    assert not path.read_bytes().startswith(b"\x80")  # a pickle's protocol opcode
    root = pathlib.Path(program_cache.__file__).parent
    users = [p.name for p in root.rglob("*.py") if "import pickle" in p.read_text()]
    assert users == []


def test_the_key_covers_name_recipe_argument_types_source_and_flags(tmp_path, monkeypatch):
    cache = ProgramCache(str(tmp_path), recipe="adam 0.001")
    key = cache.key("f", ARGS)
    assert key == ProgramCache(str(tmp_path), recipe="adam 0.001").key("f", ARGS)
    assert cache.key("g", ARGS) != key
    assert ProgramCache(str(tmp_path), recipe="adam 0.01").key("f", ARGS) != key
    assert cache.key("f", [ARGS[0][:2], ARGS[1]]) != key  # shape
    assert cache.key("f", [ARGS[0].astype(jnp.float16), ARGS[1]]) != key  # dtype
    with jax.default_matmul_precision("bfloat16"):  # a JAX setting in this thread
        assert cache.key("f", ARGS) != key
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_enable_fast_math=true")
    assert cache.key("f", ARGS) != key
    monkeypatch.delenv("XLA_FLAGS")
    monkeypatch.setattr(program_cache, "source_digest", lambda: "another jaxnn")
    assert cache.key("f", ARGS) != key


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage"])
def test_a_damaged_file_is_traced_again_and_rewritten(tmp_path, damage):
    log = []
    expected = compile_one(ProgramCache(str(tmp_path)), log)(*ARGS)
    [path] = tmp_path.glob("*.jaxexport")
    blob = path.read_bytes()
    damaged = {
        "truncate": blob[: len(blob) // 2],
        "flip": blob[:-10] + bytes([blob[-10] ^ 1]) + blob[-9:],
        "garbage": b"not a program",
    }[damage]
    path.write_bytes(damaged)
    again = ProgramCache(str(tmp_path))
    assert_same(compile_one(again, log)(*ARGS), expected)
    assert (again.misses, again.hits, len(log)) == (1, 0, 2)  # traced again
    assert path.read_bytes() != damaged  # rewritten whole: the next process loads it
    last = ProgramCache(str(tmp_path))
    assert_same(compile_one(last, log)(*ARGS), expected)
    assert last.hits == 1 and len(log) == 2


def test_a_directory_that_is_not_the_users_own_is_neither_read_nor_written(tmp_path):
    log = []
    shared = tmp_path / "shared"
    compile_one(ProgramCache(str(shared)), log)
    shared.chmod(0o777)  # others may write: their program could be loaded
    try:
        cache = ProgramCache(str(shared))
        compile_one(cache, log, name="f")
        assert (cache.misses, cache.hits, len(log)) == (1, 0, 2)  # traced, not loaded
        compile_one(cache, log, name="g")
        assert len(list(shared.glob("*.jaxexport"))) == 1  # g not written there
    finally:
        shared.chmod(0o700)


def test_a_parent_others_may_write_or_a_linked_file_is_not_read(tmp_path):
    log = []
    parent = tmp_path / "open"
    inner = parent / "programs"
    compile_one(ProgramCache(str(inner)), log)
    parent.chmod(0o777)  # anyone could swap ``programs`` for a directory of theirs
    try:
        cache = ProgramCache(str(inner))
        compile_one(cache, log)
        assert cache.hits == 0 and len(log) == 2
    finally:
        parent.chmod(0o755)
    # a file that is a link to another place is not followed
    [path] = inner.glob("*.jaxexport")
    target = tmp_path / "elsewhere.bin"
    target.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(target)
    cache = ProgramCache(str(inner))
    compile_one(cache, log)
    assert cache.hits == 0 and len(log) == 3


def test_only_the_newest_entries_are_kept(tmp_path):
    cache = ProgramCache(str(tmp_path), max_entries=2)
    for name in "abc":
        compile_one(cache, [], name=name)
    assert len(list(tmp_path.glob("*.jaxexport"))) == 2
    assert not cache.path(cache.key("a", ARGS)).exists()  # the oldest went


def test_fingerprint_reads_hyperparameters_without_tracing():
    assert fingerprint(tuple(optim.adam(1e-3))) == fingerprint(tuple(optim.adam(1e-3)))
    assert fingerprint(tuple(optim.adam(1e-3))) != fingerprint(tuple(optim.adam(1e-2)))
    assert fingerprint(tuple(optim.adam(1e-3))) != fingerprint(tuple(optim.rmsprop(1e-3)))
    with pytest.raises(TypeError, match="cannot fingerprint"):
        fingerprint(object())


@pytest.mark.slow
def test_fit_with_the_cache_equals_fit_without_fresh_loaded_and_resumed(tmp_path):
    net, ds, _ = toy_data("softmax")
    opt, key = optim.adam(1e-2), jax.random.key(0)
    plain = train.fit(net, opt, ds, 3, 8, key)
    stored = train.fit(net, opt, ds, 3, 8, key, program_cache=ProgramCache(str(tmp_path)))
    assert len(list(tmp_path.glob("*.jaxexport"))) == 2  # the start and the epoch
    second = ProgramCache(str(tmp_path))
    loaded = train.fit(net, opt, ds, 3, 8, key, program_cache=second)
    assert second.hits == 2 and second.misses == 0
    half = train.fit(net, opt, ds, 2, 8, key, program_cache=second)
    resumed = train.fit(
        net, opt, ds, 3, 8, key, params=half.params, opt_state=half.opt_state,
        start_epoch=2, history=half.history, program_cache=second,
    )  # fmt: skip
    for result in (stored, loaded, resumed):
        assert_same(result.params, plain.params)
        assert result.history == plain.history


@pytest.mark.slow
def test_two_learning_rates_under_one_recipe_never_share_a_program(tmp_path):
    net, ds, _ = toy_data("softmax")
    key = jax.random.key(0)
    for lr in (1e-2, 1e-1):
        cache = ProgramCache(str(tmp_path), recipe="adam")  # a careless recipe
        kept = train.fit(net, optim.adam(lr), ds, 2, 8, key, program_cache=cache)
        assert_same(kept.params, train.fit(net, optim.adam(lr), ds, 2, 8, key).params)
    assert len(list(tmp_path.glob("*.jaxexport"))) == 4


@pytest.mark.slow
def test_an_optimizer_it_cannot_read_is_traced_and_nothing_is_kept(tmp_path):
    net, ds, _ = toy_data("softmax")
    opt = optim.adam(1e-2)

    class Opaque:  # a hyperparameter held in an object fingerprint cannot read
        rate = 1e-2

    opaque = Opaque()

    def update(grads, state, params=None):
        assert opaque.rate == 1e-2
        return opt.update(grads, state, params)

    unreadable = type(opt)(opt.init, update)
    key = jax.random.key(0)
    got = train.fit(net, unreadable, ds, 2, 8, key, program_cache=ProgramCache(str(tmp_path)))
    assert_same(got.params, train.fit(net, opt, ds, 2, 8, key).params)
    assert not tmp_path.exists() or not list(tmp_path.glob("*.jaxexport"))


START_BITS = """
import jax, jax.numpy as jnp, numpy as np
from jaxnn import optim, programs, train
from jaxnn.network import Network

key = jax.random.key(7)
for x64 in (True, False):
    with jax.enable_x64(x64):
        net = Network((64, 256, 128, 10), ("relu", "sigmoid", "softmax"), "cross_entropy")
        init = train.make_init(net, optim.adam(1e-3))
        fast = init.lower(key).compile(programs.INIT_COMPILER_OPTIONS)(key)
        default = init.lower(key).compile()(key)
        leaves = jax.tree.leaves(fast)
        assert leaves[0].dtype == (jnp.float64 if x64 else jnp.float32)
        for a, b in zip(leaves, jax.tree.leaves(default), strict=True):
            np.testing.assert_array_equal(a, b)
print("OK")
"""


@pytest.mark.slow
def test_the_start_compiled_for_speed_gives_the_default_compiles_bits():
    """fit's start compiles with INIT_COMPILER_OPTIONS on the CPU (LLVM level 1: a
    program run once); its params and optimizer state equal the default compile's, bit
    for bit, in float64 and float32, for He (relu) and Glorot (softmax, sigmoid) layers.
    In a fresh process: this one compiles with other defaults (tests/conftest.py)."""
    result = run_script(START_BITS)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split() == ["OK"]


def test_a_program_jax_cannot_export_runs_unstored(tmp_path):
    def with_callback(x):
        y = jax.pure_callback(np.sin, jax.ShapeDtypeStruct(x.shape, x.dtype), x)
        return [y * 2]

    cache = ProgramCache(str(tmp_path))
    x = jnp.arange(3.0)
    [program] = cache.compile_many([(jax.jit(with_callback), [x], "callback")])
    np.testing.assert_allclose(program(x)[0], 2 * np.sin(np.arange(3.0)))
    assert not list(tmp_path.glob("*.jaxexport"))


@pytest.mark.slow
def test_weight_decay_and_train_metrics_never_share_a_program(tmp_path):
    net, ds, _ = toy_data("softmax")
    key, opt = jax.random.key(0), optim.adam(1e-2)
    runs = [{}, {"weight_decay": 1.0}, {"train_metrics": True}]
    for kwargs in runs:
        kept = train.fit(net, opt, ds, 2, 8, key, program_cache=ProgramCache(str(tmp_path)),
                         **kwargs)  # fmt: skip
        plain = train.fit(net, opt, ds, 2, 8, key, **kwargs)
        assert_same(kept.params, plain.params)
        assert kept.history == plain.history
    assert len(list(tmp_path.glob("*.jaxexport"))) == 2 * len(runs)  # a start and an epoch each
