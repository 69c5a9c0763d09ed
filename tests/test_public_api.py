"""The public API: every module of jaxnn says what it offers (``__all__``), and only that.

For each module (``pkgutil.walk_packages``; ``__main__`` runs the command line and
offers nothing): ``__all__`` exists; every name in it exists; none of them is an
imported module (but the package's own submodules) or an object imported from
another library (``jax``, ``jnp``, ``np``, ``optax``, ...); every function and
class in it has a docstring of its own.
"""

import importlib
import inspect
import pkgutil
import types
import typing

import pytest

import jaxnn

# Modules being rewritten (issue 20) that have no ``__all__`` yet: each is checked as
# soon as it defines one. Empty this once they all do.
PENDING: set[str] = set()

MODULES = [
    "jaxnn",
    *sorted(
        info.name
        for info in pkgutil.walk_packages(jaxnn.__path__, "jaxnn.")
        if info.name.rpartition(".")[2] != "__main__"
    ),
]


def test_pending_names_modules_that_exist():
    """``PENDING`` stays honest: it names modules of the package, nothing else."""
    assert PENDING <= set(MODULES), sorted(PENDING - set(MODULES))


def public_module(name: str) -> types.ModuleType:
    module = importlib.import_module(name)
    if not hasattr(module, "__all__"):
        if name in PENDING:
            pytest.skip(f"{name} has no __all__ yet (PENDING)")
        pytest.fail(f"{name} does not define __all__")
    return module


def is_foreign(obj, module: types.ModuleType) -> bool:
    """An imported module other than the package's own submodules, or a function or
    class defined outside jaxnn. Type aliases written in the module are its own."""
    if inspect.ismodule(obj):
        return not obj.__name__.startswith(module.__name__ + ".")
    if isinstance(obj, types.UnionType) or typing.get_origin(obj) is not None:
        return False  # a type alias, e.g. Params = Sequence[Layer]
    if inspect.isfunction(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj):
        return not (getattr(obj, "__module__", None) or "").startswith("jaxnn")
    return False


def has_own_docstring(obj) -> bool:
    """A docstring written for it: not None, and not the signature that NamedTuple
    and dataclass write when there is none, such as ``Errors(max_abs, max_rel)``."""
    doc = obj.__doc__
    if not doc or not doc.strip():
        return False
    if inspect.isclass(obj) and doc.startswith(f"{obj.__name__}(") and "\n" not in doc.strip():
        return False
    return True


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name):
    module = public_module(name)
    assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ repeats a name"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it lacks: {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_no_imported_module_or_foreign_object_in_all(name):
    module = public_module(name)
    visible = [n for n in dir(module) if not n.startswith("_")]
    foreign = [n for n in visible if is_foreign(getattr(module, n), module)]
    listed = sorted(set(foreign) & set(module.__all__))
    assert not listed, f"{name}.__all__ lists what it imported from elsewhere: {listed}"


@pytest.mark.parametrize("name", MODULES)
def test_public_functions_and_classes_have_docstrings(name):
    module = public_module(name)
    undocumented = [
        n
        for n in module.__all__
        if (inspect.isfunction(obj := getattr(module, n)) or inspect.isclass(obj))
        and not has_own_docstring(obj)
    ]
    assert not undocumented, f"{name}: no docstring for {undocumented}"


def test_foreign_objects_are_recognised():
    """The checks above catch what they are meant to catch."""
    import jax.numpy as jnp
    import numpy as np

    from jaxnn import network, verify

    assert is_foreign(np, network) and is_foreign(jnp, network)
    assert is_foreign(np.asarray, network) and is_foreign(jnp.zeros, network)
    assert not is_foreign(network.Network, network) and not is_foreign(network.Params, network)
    assert not is_foreign(importlib.import_module("jaxnn.verify.matrix"), verify)
    assert not has_own_docstring(typing.NamedTuple("Bare", [("a", int)]))
