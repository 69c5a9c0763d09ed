"""The architecture holds: imports flow one way by layer, with no circle; only the
command line prints; no module reaches for another module's private names.

Every module under jaxnn/ (subpackages included) is read with ``ast``, every
import in it counted, also those inside functions: ``import jaxnn.x``, ``from jaxnn
import x``, relative imports, ``importlib.import_module("jaxnn.x")`` and attribute
access to a submodule through a package (``jaxnn.train`` after ``import jaxnn``).
Importing a package's parent (``jaxnn`` when importing ``jaxnn.network``) is how
Python loads any submodule and is not counted as a dependency.

The layers are read from one place, ``jaxnn/__init__.py``'s docstring: its list "from
the bottom up", one bullet per layer, names its modules in order, and imports may only
point down that list. A new module needs no edit here when it falls under a listed
package (everything under ``jaxnn.verify``, ``jaxnn.cli`` or ``jaxnn.bench`` does); a new
top-level module fails ``test_every_module_has_a_layer`` until the docstring lists it.
"""

import ast
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "jaxnn"

ORDER = ("math", "training", "tools", "cli")  # a module imports its own layer or lower ones
# The docstring's bullet headings, as layers.
HEADINGS = {"math": "math", "training": "training", "tools": "tools", "the command line": "cli"}


def docstring_layers(docstring: str) -> dict:
    """``{"jaxnn.<name>": layer}`` in the order of the docstring's bottom-up list: every
    double-backquoted name in the bullets that follow "from the bottom up", each bullet
    ``* <heading>: ...`` one layer."""
    _, found, rest = docstring.partition("from the bottom up")
    assert found, "jaxnn/__init__.py's docstring no longer says 'from the bottom up'"
    bullets = rest.split("\n\n")[1]  # the paragraph of bullets after the heading line
    assert bullets.lstrip().startswith("* "), f"no bullet list after 'from the bottom up': {rest}"
    layers = {}
    for bullet in re.split(r"^\* ", bullets.strip(), flags=re.M)[1:]:
        heading = bullet.split(":")[0]
        assert heading in HEADINGS, f"unknown layer {heading!r}; known: {sorted(HEADINGS)}"
        for name in re.findall(r"``(\w+)``", bullet):
            assert f"jaxnn.{name}" not in layers, f"jaxnn/__init__.py lists {name} twice"
            layers[f"jaxnn.{name}"] = HEADINGS[heading]
    return layers


ROOT_DOCSTRING = ast.get_docstring(ast.parse((PACKAGE / "__init__.py").read_text()))
LISTED = docstring_layers(ROOT_DOCSTRING)
# The one table of layers. A row names a module, or a package and everything in it.
LAYERS = {
    # the root re-exports the math; training and tools load lazily on attribute access
    "jaxnn": "math",
    **LISTED,
    "jaxnn.__main__": "cli",  # python -m jaxnn
}
# optim works on any pytree: from jaxnn it may import only these.
OPTIM_MAY_IMPORT = {"jaxnn.validation"}
# Writing to the terminal, by any of these routes, belongs to jaxnn.cli alone.
PRINTING_MODULES = {"pprint", "tqdm"}
STREAMS = {"stdout", "stderr", "__stdout__", "__stderr__"}


def module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(path: pathlib.Path) -> bool:
    return path.name == "__init__.py"


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py")) if "__pycache__" not in p.parts}
PACKAGES = {name for name, p in MODULES.items() if is_package(p)}


def layer_of(name: str) -> str | None:
    """The layer of a module: its own row, or the row of the nearest package above it
    (the root's row covers the root module alone)."""
    if name in LAYERS:
        return LAYERS[name]
    parts = name.split(".")
    for i in range(len(parts) - 1, 1, -1):
        if ".".join(parts[:i]) in LAYERS:
            return LAYERS[".".join(parts[:i])]
    return None


def resolve(base: str, name: str | None = None) -> str:
    """The module that ``from base import name`` (or ``import base``) depends on."""
    if name is not None and f"{base}.{name}" in MODULES:
        return f"{base}.{name}"
    return base


class Imports(ast.NodeVisitor):
    """What one module imports from jaxnn: (line, module, name or None) records."""

    def __init__(self, name: str):
        self.name = name
        self.package = name if name in PACKAGES else name.rpartition(".")[0]
        self.records = []  # (line, module, imported name or None)
        self.bound = {}  # local name -> jaxnn package module it is bound to

    def absolute(self, node: ast.ImportFrom) -> str | None:
        if not node.level:
            return node.module
        base = self.package.split(".")
        base = base[: len(base) - node.level + 1]
        return ".".join(base + ([node.module] if node.module else []))

    def visit_Import(self, node):
        for alias in node.names:
            if alias.name.split(".")[0] == "jaxnn":
                self.records.append((node.lineno, alias.name, None))
                if alias.asname:
                    self.bound[alias.asname] = alias.name
                else:
                    self.bound["jaxnn"] = "jaxnn"

    def visit_ImportFrom(self, node):
        base = self.absolute(node)
        if base and base.split(".")[0] == "jaxnn":
            for alias in node.names:
                target = resolve(base, alias.name)
                if target != base:  # a submodule
                    self.records.append((node.lineno, target, None))
                    self.bound[alias.asname or alias.name] = target
                else:
                    self.records.append((node.lineno, base, alias.name))
        self.generic_visit(node)

    def visit_Call(self, node):
        # importlib.import_module("jaxnn.x") with a constant name
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "import_module" and node.args and isinstance(node.args[0], ast.Constant):
            target = node.args[0].value
            if isinstance(target, str) and target.split(".")[0] == "jaxnn":
                self.records.append((node.lineno, target, None))
        self.generic_visit(node)

    def visit_Attribute(self, node):
        # pkg.sub (a submodule reached through its package) and mod._private
        if isinstance(node.value, ast.Name) and node.value.id in self.bound:
            owner = self.bound[node.value.id]
            if f"{owner}.{node.attr}" in MODULES:
                self.records.append((node.lineno, f"{owner}.{node.attr}", None))
            elif owner in MODULES:
                self.records.append((node.lineno, owner, node.attr))
        self.generic_visit(node)


def imports_of(name: str):
    tree = ast.parse(MODULES[name].read_text(), str(MODULES[name]))
    visitor = Imports(name)
    visitor.visit(tree)
    # a module's records about itself (the root naming its own attributes) are no import
    return [(line, mod, attr) for line, mod, attr in visitor.records if mod != name]


GRAPH = {name: imports_of(name) for name in MODULES}


def where(name: str, line: int) -> str:
    return f"{MODULES[name].relative_to(ROOT)}:{line}"


def test_every_module_has_a_layer():
    unknown = sorted(name for name in MODULES if layer_of(name) is None)
    assert not unknown, (
        f"modules without a layer: {unknown}; list each in jaxnn/__init__.py's docstring, "
        "in its bottom-up list, under its layer (math: formulas on arrays; training: steps, "
        "fitting, data, checkpoints; tools: verification and benchmarks; the command line)"
    )


def test_every_import_resolves_to_a_module():
    missing = [
        f"{where(name, line)} imports {mod}"
        for name, records in GRAPH.items()
        for line, mod, _ in records
        if mod not in MODULES
    ]
    assert not missing, missing


def test_imports_flow_one_way_by_layer():
    upward = []
    for name, records in GRAPH.items():
        if layer_of(name) is None:
            continue  # reported by test_every_module_has_a_layer
        rank = ORDER.index(layer_of(name))
        for line, mod, _ in records:
            target = layer_of(mod)
            if target is not None and ORDER.index(target) > rank:
                upward.append(
                    f"{where(name, line)}: {name} ({layer_of(name)}) imports {mod} ({target})"
                )
    assert not upward, "imports that point up a layer:\n" + "\n".join(upward)


def test_nothing_outside_the_command_line_imports_it():
    found = [
        f"{where(name, line)}: {name} imports {mod}"
        for name, records in GRAPH.items()
        if layer_of(name) != "cli"
        for line, mod, _ in records
        if layer_of(mod) == "cli"
    ]
    assert not found, found


def test_optim_imports_nothing_from_the_network_modules():
    found = {mod for _, mod, _ in GRAPH["jaxnn.optim"]} - OPTIM_MAY_IMPORT
    assert not found, f"jaxnn.optim works on any pytree, yet imports {sorted(found)}"


def find_cycle(edges):
    """One import circle in ``{module: {module}}``, as a list of modules, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = "done"
        return None

    for start in sorted(edges):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


def dependency_edges():
    """Module -> the modules it imports (as written: a package's parents, which Python
    loads for any submodule, count only where the code imports them itself)."""
    return {name: {m for _, m, _ in records if m in MODULES} for name, records in GRAPH.items()}


def test_no_import_circle():
    cycle = find_cycle(dependency_edges())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_the_cycle_finder_finds_a_planted_circle():
    edges = dependency_edges()
    assert find_cycle({**edges, "jaxnn.validation": {"jaxnn.train"}}) is not None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def printing(source: str):
    """(line, what) for every way the module ``source`` writes to the terminal."""
    tree = ast.parse(source)
    found = []
    # The names the sys module goes by here; another object's .stdout (a finished
    # subprocess's captured output) is not the terminal.
    sys_names = {"sys"} | {
        a.asname or a.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for a in node.names
        if a.name == "sys"
    }
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "print":
            found.append((node.lineno, "print"))
        elif (
            isinstance(node, ast.Attribute)
            and node.attr in STREAMS
            and not (isinstance(node.value, ast.Name) and node.value.id not in sys_names)
        ):
            found.append((node.lineno, f"sys.{node.attr}"))
        elif isinstance(node, ast.ImportFrom) and node.module == "sys":
            found += [(node.lineno, f"sys.{a.name}") for a in node.names if a.name in STREAMS]
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names]
            names = [node.module] if isinstance(node, ast.ImportFrom) else names
            found += [(node.lineno, n) for n in names if n and n.split(".")[0] in PRINTING_MODULES]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "write"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "os"
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value in (1, 2)
        ):
            found.append((node.lineno, "os.write to fd 1 or 2"))
    return found


# Printing outside jaxnn.cli, each with its reason: scikit-learn's estimators print
# their epochs' losses when, and only when, the user sets ``verbose`` (its API's contract).
MAY_PRINT = {"jaxnn.sklearn.estimators": 2}  # module: the number of print calls allowed


def test_only_the_command_line_prints():
    found = [
        f"{where(name, line)}: {what}"
        for name in MODULES
        if layer_of(name) != "cli"
        for line, what in printing(MODULES[name].read_text())
    ]
    for name, allowed in MAY_PRINT.items():
        theirs = [f for f in found if f.startswith(str(MODULES[name].relative_to(ROOT)))]
        assert len(theirs) == allowed, (name, theirs)
        found = [f for f in found if f not in theirs]
    assert not found, "only jaxnn.cli writes to the terminal; return text instead:\n" + "\n".join(
        found
    )


def test_the_print_finder_sees_each_route():
    source = textwrap.dedent(
        """
        import sys
        import sys as system
        from sys import stderr
        import tqdm

        def f(x):
            print(x)
            sys.stdout.write(x)
            system.__stderr__.write(x)
            log = print
            done = subprocess.run(x, capture_output=True)
            return done.stdout  # captured output, not the terminal
        """
    )
    whats = sorted(what for _, what in printing(source))
    assert whats == ["print", "print", "sys.__stderr__", "sys.stderr", "sys.stdout", "tqdm"], whats


def test_no_module_imports_a_private_name_of_another():
    found = [
        f"{where(name, line)}: {name} uses {mod}.{attr}"
        for name, records in GRAPH.items()
        for line, mod, attr in records
        if attr and attr.startswith("_") and not (attr.startswith("__") and attr.endswith("__"))
    ]
    found += [
        f"{name} imports the private module {mod}"
        for name, records in GRAPH.items()
        for _, mod, _ in records
        if any(p.startswith("_") and not p.startswith("__") for p in mod.split("."))
    ]
    assert not found, "make the helper public in the lower module, with a docstring:\n" + (
        "\n".join(found)
    )


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("from jaxnn.network import _forward", [("jaxnn.network", "_forward")]),
        (
            "from jaxnn import network\nnetwork._forward",
            [("jaxnn.network", None), ("jaxnn.network", "_forward")],
        ),
        ("import jaxnn\njaxnn.train", [("jaxnn", None), ("jaxnn.train", None)]),
        ("from . import network", [("jaxnn.network", None)]),
        ("import importlib\nimportlib.import_module('jaxnn.cli')", [("jaxnn.cli", None)]),
        ("def f():\n    from jaxnn.verify import matrix", [("jaxnn.verify.matrix", None)]),
    ],
)
def test_the_import_finder_sees_each_form(source, expected):
    visitor = Imports("jaxnn.planted")
    visitor.visit(ast.parse(source))
    assert [(mod, attr) for _, mod, attr in visitor.records] == expected


@pytest.mark.slow
def test_import_jaxnn_is_light_and_lazy_submodules_resolve():
    """``import jaxnn`` loads the math only; ``jaxnn.train`` and the rest load on use."""
    code = textwrap.dedent(
        """
        import sys
        import jaxnn
        loaded = sorted(m for m in sys.modules if m.startswith("jaxnn"))
        jaxnn.train.fit, jaxnn.data, jaxnn.parallel, jaxnn.checkpoint, jaxnn.optim
        jaxnn.verify.run_matrix, jaxnn.steps.make_step
        print(" ".join(loaded))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    loaded = result.stdout.split()
    heavy = [m for m in loaded if layer_of(m) != "math"]
    assert not heavy, f"import jaxnn loads {heavy}; load them lazily (PEP 562 __getattr__)"


# --- the order in jaxnn/__init__.py's docstring -------------------------------------------
# The package's docstring lists its modules "from the bottom up (imports only ever point
# down this list)". These tests read that list, so the rule holds for the list as written.
# Imports that point up it today, reported to the lead; each is to be fixed (the helper
# moved down, or the list reordered) and its line removed. A line whose import is gone
# fails test_the_known_upward_imports_are_still_there, so this list cannot go stale.
KNOWN_UPWARD = {
    ("jaxnn.backpropagation", "jaxnn.sharding"),  # sum_over_examples, for BP3/BP4
    ("jaxnn.rows", "jaxnn.sharding"),  # sum_over_examples
}
# Modules of the command line that are not under jaxnn.cli: they take its place.
LISTED_AS = {"jaxnn.__main__": "jaxnn.cli"}


def listed_as(name: str) -> str | None:
    """The entry of the docstring's list that covers a module: its own, or its package's
    (``jaxnn.verify.matrix`` is ``jaxnn.verify``); None for the root itself."""
    if name == "jaxnn":
        return None  # the package: re-exports the math, loads the rest lazily
    name = LISTED_AS.get(name, name)
    return ".".join(name.split(".")[:2])


def upward_imports() -> dict:
    """{(module's entry, imported module's entry): [where]} for every import of a module
    listed above the importer's own entry."""
    rank = {name: i for i, name in enumerate(LISTED)}
    found = {}
    for name, records in GRAPH.items():
        here = listed_as(name)
        for line, mod, _ in records:
            there = listed_as(mod)
            if here in rank and there in rank and rank[there] > rank[here]:
                found.setdefault((here, there), []).append(where(name, line))
    return found


def test_the_docstring_lists_only_modules():
    entries = {listed_as(name) for name in MODULES} - {None}
    ghosts = sorted(set(LISTED) - entries)
    assert not ghosts, (
        f"jaxnn/__init__.py's bottom-up list names modules that do not exist: {ghosts}"
    )


def test_imports_point_down_the_docstrings_list():
    new = {k: v for k, v in upward_imports().items() if k not in KNOWN_UPWARD}
    assert not new, (
        "imports that point up jaxnn/__init__.py's bottom-up list (move the helper down, "
        "or reorder the list if the list is wrong):\n"
        + "\n".join(f"{a} imports {b}: {', '.join(w)}" for (a, b), w in sorted(new.items()))
    )


def test_the_known_upward_imports_are_still_there():
    gone = KNOWN_UPWARD - set(upward_imports())
    assert not gone, f"fixed: remove {sorted(gone)} from KNOWN_UPWARD in tests/test_architecture.py"


def test_the_docstring_reader_reads_the_list():
    doc = textwrap.dedent(
        """\
        Intro with ``jax.custom_vjp`` and ``(m, n)``.

        The package, from the bottom up (imports only ever point down this list):

        * math: ``validation`` (input checks), ``network`` (uses ``jax.custom_vjp``);
        * tools: ``verify``, and ``(m, n)`` data;
        * the command line: ``cli``.

        ``jaxnn.train`` loads on first use.
        """
    )
    assert docstring_layers(doc) == {
        "jaxnn.validation": "math",
        "jaxnn.network": "math",
        "jaxnn.verify": "tools",
        "jaxnn.cli": "cli",
    }
