"""The docs stay true.

docs/derivations.md: every function and test it cites exists, and every equation tag in
the code has its entry there. The code is every module under jaxnn/, subpackages
included. A tag is a parenthesised name with a digit or a hyphen, ``(BP1)``,
``(OPT-A4)``, ``(C-M)``, in a comment or a docstring; a range ``(BP1-BP4)`` stands for
each tag in it. Other parenthesised capitals, ``(EMA)``, ``(Z)``, are words, not tags.

README.md and docs/*.md: every Python block runs (here, in a fresh process on four
virtual devices, or in the test file named for it) or is exempt with its reason; what a
block prints matches the output the doc shows beside it, numbers aside; every ``jaxnn``
command in a shell block parses; every ``jaxnn.x`` name they give exists; the README
links every doc; and every public function (the names in a module's ``__all__``) is
annotated, as docs/interop.md says.
"""

import ast
import contextlib
import importlib
import inspect
import io
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap
import tokenize

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
DERIVATIONS = (ROOT / "docs" / "derivations.md").read_text()


def _cited_tests():
    cited = set(re.findall(r"(tests/\w+\.py)::(\w+)", DERIVATIONS))
    return sorted(cited - {("tests/file.py", "test_name")})  # the preamble's example


def _cited_functions():
    return sorted(set(re.findall(r"`(jaxnn(?:\.\w+)+)`", DERIVATIONS)))


@pytest.mark.parametrize(("path", "name"), _cited_tests())
def test_cited_test_exists(path, name):
    tree = ast.parse((ROOT / path).read_text())
    defined = {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    assert name in defined, f"docs/derivations.md cites {path}::{name}, which does not exist"


@pytest.mark.parametrize("dotted", _cited_functions())
def test_cited_function_exists(dotted):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            assert hasattr(obj, attr), f"docs/derivations.md cites {dotted}: no {attr}"
            obj = getattr(obj, attr)
        return
    pytest.fail(f"docs/derivations.md cites {dotted}, which does not import")


TAG = re.compile(r"\(([A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*)\)")
RANGE = re.compile(r"([A-Z][A-Z-]*?)(\d+)-\1(\d+)")


def tags_in_text(text: str) -> set:
    """The equation tags in a comment or docstring, each range expanded."""
    tags = set()
    for name in TAG.findall(text):
        if r := RANGE.fullmatch(name):
            prefix, first, last = r.group(1), int(r.group(2)), int(r.group(3))
            tags |= {f"{prefix}{i}" for i in range(first, last + 1)}
        elif any(c.isdigit() or c == "-" for c in name):
            tags.add(name)
    return tags


def tags_in_source(source: str) -> set:
    """The tags in a module's comments and in its module, class and function docstrings."""
    tags = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            tags |= tags_in_text(token.string)
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            tags |= tags_in_text(ast.get_docstring(node) or "")
    return tags


def code_tags() -> dict:
    """{tag: [the modules that carry it]} over every module under jaxnn/, recursively."""
    found = {}
    for path in sorted((ROOT / "jaxnn").rglob("*.py")):
        for tag in tags_in_source(path.read_text()):
            found.setdefault(tag, []).append(str(path.relative_to(ROOT)))
    return found


def test_the_tag_reader_reads_comments_docstrings_and_ranges():
    source = '''
"""Module: (BP1-BP3), and an exponential moving average (EMA) of (Z)."""
x = 1  # (OPT-A4), (C-M)
y = "(S9) in a string that is no docstring"


class K:
    """(F2)"""

    def f(self):
        """(G-Y1)"""
'''
    assert tags_in_source(source) == {"BP1", "BP2", "BP3", "OPT-A4", "C-M", "F2", "G-Y1"}


def test_every_equation_tag_in_the_code_is_documented():
    found = code_tags()
    assert {"BP1", "BP2", "BP3", "BP4", "S2", "F1", "OPT-A4", "A11"} <= set(found), sorted(found)
    missing = {
        t: where
        for t, where in found.items()
        if f"({t})" not in DERIVATIONS and f"\\tag{{{t}}}" not in DERIVATIONS
    }
    assert not missing, f"tags in the code without an entry in docs/derivations.md: {missing}"


def test_the_tag_scan_reaches_subpackages():
    scanned = {w for where in code_tags().values() for w in where}
    assert any(w.startswith("jaxnn/verify/") for w in scanned), sorted(scanned)


# --- every code block of README.md and docs/*.md runs, or says why not ---------------------
# A block is fenced with ```python, ```bash (or sh, shell, console) at any indent. Each
# Python block has one entry below, in its file's order: "here" (runs alone, in this
# process, in a fresh scope), "here, slow" (the same, marked slow), "four devices" (the
# file's four-device blocks run in order, in one scope, in a fresh process with 4 virtual
# CPU devices, after the file's PRELUDE), a test file that runs it, or "not run: why".
# Every ``jaxnn ...`` command in a shell block is parsed by the real command line's parser
# (cheap, and it catches a renamed or removed option); SHELL says why none is run as well.
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_LANGUAGES = ("bash", "sh", "shell", "console")
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)

PYTHON = {
    "README.md": [
        "tests/test_own_data.py",  # the "Your own data" block: docs/own-data.md's, run there
        "here",  # the scikit-learn estimators
        "tests/test_readme.py",
    ],
    "docs/interop.md": ["tests/test_interop_docs.py"] * 8,
    "docs/scaling.md": [
        "four devices",
        "four devices",
        "not run: distributed.initialize() needs several processes (a SLURM, TPU or MPI "
        "environment, or another process at the coordinator); tests/test_distributed.py runs "
        "the same path, jaxnn train on two processes",
    ],
    "docs/own-data.md": ["tests/test_own_data.py"] * 2,  # in order, with the commands
    "docs/verifying.md": [
        "not run: the whole matrix, minutes of compiling: .ci/run's jaxnn verify --expect runs "
        "it (run_matrix, then its summary; tests/test_verify.py checks format_table)",
        "here",
        "here, slow",  # locate_fault on one's own backward, right and with the seed's BCE
        "here, slow",  # cost_with_hand_gradients: training steps, per-example, Hessian
        "here",
    ],
    "docs/sklearn.md": ["here", "here, slow"],  # slow: a grid search, 21 fits
    "docs/curvature.md": ["here", "here, slow"],  # the imports; the worked example (9 s)
}
SHELL = {
    "docs/own-data.md": [
        "not run: here, but tests/test_own_data.py runs each command, after the block that "
        "writes wine.csv"
    ],
    "README.md": [
        "not run: installs into a fresh virtual environment; .ci/run installs the same way",
        "not run: it is CI itself",
        "not run: the tests themselves",
        "not run: here, but it is docs/own-data.md's block, which tests/test_own_data.py runs",
    ],
    "docs/scaling.md": [
        "not run: needs 4 devices; the next block's command on virtual devices is the same",
        "not run: trains for 40 epochs; tests/test_parallel.py runs jaxnn train --devices 4",
        "not run: several processes; tests/test_distributed.py runs this pair",
        "not run: needs SLURM",
        "not run: needs a TPU pod slice and gcloud",
    ],
}
# What the fragments of a file leave to the reader, defined before its four-device blocks.
PRELUDE = {
    "docs/scaling.md": """
import jax
import numpy as np
import jaxnn
from jaxnn import optim
from jaxnn.data import Dataset

net = jaxnn.Network((8, 16, 3), ("relu", "softmax"), "cross_entropy")
optimizer = optim.adam(1e-2)
rng = np.random.default_rng(0)
X_all = rng.normal(size=(8, 192))
Y_all = np.eye(3)[rng.integers(0, 3, 192)].T
data = Dataset(X_all[:, :128], Y_all[:, :128], X_all[:, 128:], Y_all[:, 128:],
               "classification", "softmax", "cross_entropy")
epochs, batch_size, key = 2, 64, jax.random.key(0)
params = jaxnn.init_params(jax.random.key(1), net)
X, Y = X_all[:, :64], Y_all[:, :64]
""",
}
# What is checked after them, independently of the blocks' own code.
AFTER = {
    "docs/scaling.md": """
import jax
import numpy as np
expected = jax.grad(jaxnn.cost)(params, np.asarray(X), np.asarray(Y), net)
for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
one = train.fit(net, optimizer, data, epochs, 64, key)
for a, b in zip(jax.tree.leaves(result.params), jax.tree.leaves(one.params), strict=True):
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
""",
}


def code_blocks(path: pathlib.Path, languages) -> list[str]:
    """The bodies of the blocks fenced with one of ``languages``, dedented, in order."""
    return [
        textwrap.dedent(m["body"])
        for m in FENCE.finditer(path.read_text())
        if m["lang"] in languages
    ]


def name_of(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT))


def planned(plan: dict, kind: str) -> list:
    return [(doc, i) for doc, ways in plan.items() for i, way in enumerate(ways) if way == kind]


def test_the_fence_reader_reads_indented_blocks_and_languages(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text(
        "```python\nx = 1\n```\n\n* item:\n\n  ```bash\n  jaxnn train\n  ```\n\n"
        "```text\nout\n```\n```\nplain\n```\n"
    )
    assert code_blocks(doc, ("python",)) == ["x = 1\n"]
    assert code_blocks(doc, SHELL_LANGUAGES) == ["jaxnn train\n"]
    assert code_blocks(doc, ("",)) == ["plain\n"]


@pytest.mark.parametrize(("plan", "languages"), [(PYTHON, ("python",)), (SHELL, SHELL_LANGUAGES)])
def test_every_code_block_has_a_plan(plan, languages):
    found = {name_of(p): len(code_blocks(p, languages)) for p in DOCS}
    found = {doc: n for doc, n in found.items() if n}
    assert found == {doc: len(ways) for doc, ways in plan.items()}, (
        f"{languages[0]} blocks per file (left) against the plan in tests/test_docs.py: "
        "give each new block its entry"
    )
    for doc, ways in plan.items():
        for way in ways:
            known = way in ("here", "here, slow", "four devices") or way.startswith("not run: ")
            if not known:
                runner = ROOT / way
                assert runner.is_file() and pathlib.Path(doc).name in runner.read_text(), (
                    f"{doc}: {way} does not exist or does not name {doc}"
                )


def run_block(doc: str, i: int) -> str:
    """Run the block alone in a fresh scope; what it printed."""
    code = code_blocks(ROOT / doc, ("python",))[i]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, f"{doc}, python block {i + 1}", "exec"), {"__name__": "__doc__"})
    return out.getvalue()


def shown_output(doc: str, i: int) -> str | None:
    """The ```text block right after python block i, if any: the output the doc shows."""
    text = (ROOT / doc).read_text()
    python = [m for m in FENCE.finditer(text) if m["lang"] == "python"][i]
    after = FENCE.search(text, python.end())
    between = text[python.end() : after.start()] if after else ""
    return after["body"] if after and after["lang"] == "text" and not between.strip() else None


def skeleton(line: str) -> str:
    """A line of output with its numbers replaced, its spacing collapsed, and a table's
    rules of dashes cut to one dash: their width follows the numbers' (a sign, a digit)."""
    line = re.sub(r"[-+]?\d[\w.+-]*", "#", line)
    line = re.sub(r"-{2,}", "-", line)
    return " ".join(line.split())


HERE = [
    pytest.param(doc, i, marks=[pytest.mark.slow] if way == "here, slow" else [])
    for doc, ways in PYTHON.items()
    for i, way in enumerate(ways)
    if way in ("here", "here, slow")
]


@pytest.mark.parametrize(("doc", "i"), HERE, ids=[f"{p.values[0]}-{p.values[1] + 1}" for p in HERE])
def test_python_block_runs_and_prints_what_the_doc_shows(doc, i):
    printed = run_block(doc, i)
    shown = shown_output(doc, i)
    if shown is None:
        return
    got = {skeleton(line) for line in printed.splitlines()}
    missing = [
        line for line in shown.splitlines() if "elided" not in line and skeleton(line) not in got
    ]
    assert not missing, f"{doc} shows lines that block {i + 1} does not print:\n" + "\n".join(
        missing
    )


FOUR_DEVICES = sorted({doc for doc, _ in planned(PYTHON, "four devices")})
HARNESS = """
import sys
import jax
jax.config.update("jax_enable_x64", True)
jax.config.update("jax_default_matmul_precision", "highest")
assert jax.device_count() == 4, jax.devices()
scope = {"__name__": "__doc__"}
for name, code in zip(sys.argv[1::2], sys.argv[2::2]):
    exec(compile(code, name, "exec"), scope)
print("OK")
"""


@pytest.mark.slow
@pytest.mark.parametrize("doc", FOUR_DEVICES)
def test_four_device_blocks_run(doc):
    blocks = code_blocks(ROOT / doc, ("python",))
    parts = [f"{doc}, prelude", PRELUDE.get(doc, "")]
    for i, way in enumerate(PYTHON[doc]):
        if way == "four devices":
            parts += [f"{doc}, python block {i + 1}", blocks[i]]
    parts += [f"{doc}, checks", AFTER.get(doc, "")]
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=4")
    env["JAX_PLATFORMS"] = "cpu"
    out = subprocess.run(
        [sys.executable, "-c", HARNESS, *parts],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-4000:]
    assert out.stdout.endswith("OK\n")


def jaxnn_commands(block: str) -> list[list[str]]:
    """Every ``jaxnn ...`` command line in a shell block, as argv (without ``jaxnn``):
    after ``&&``, ``;``, ``|``, ``srun`` or environment assignments, and inside a
    ``--command="..."`` argument."""
    commands = []
    for line in block.replace("\\\n", " ").splitlines():
        line = line.split(" #")[0].strip()
        if not line or line.startswith("#"):
            continue
        words = shlex.split(line)
        for w in list(words):
            if w.startswith("--command="):
                commands += jaxnn_commands(w.removeprefix("--command="))
        current = None
        for w in [*words, "&&"]:
            operator = w in ("&&", ";", "|", "||", "&")
            if operator or w.endswith(("&", ";")):  # "cmd &" or "cmd&"
                if current is not None:
                    commands.append(current if operator else [*current, w[:-1]])
                current = None
            elif current is not None:
                current.append(w)
            elif w == "jaxnn" or w.endswith("/jaxnn"):
                current = []
    return commands


def test_the_command_reader_finds_each_form():
    block = (
        "XLA_FLAGS=x jaxnn train --devices 4   # a comment\n"
        "jaxnn train --a 1 &\n"
        "source x && pip install y && jaxnn train\n"
        "#SBATCH --nodes=2\n"
        "srun .venv/bin/jaxnn verify --full\n"
        'gcloud ssh --command="jaxnn train --out /x"\n'
    )
    assert jaxnn_commands(block) == [
        ["train", "--devices", "4"],
        ["train", "--a", "1"],
        ["train"],
        ["verify", "--full"],
        ["train", "--out", "/x"],
    ]


SHELL_COMMANDS = [
    (name_of(p), argv)
    for p in DOCS
    for b in code_blocks(p, SHELL_LANGUAGES)
    for argv in jaxnn_commands(b)
]


@pytest.mark.parametrize(
    ("doc", "argv"), SHELL_COMMANDS, ids=[" ".join(a) for _, a in SHELL_COMMANDS]
)
def test_shell_commands_parse(doc, argv):
    from jaxnn.cli import build_parser

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            build_parser().parse_args(argv)
    except SystemExit as e:
        pytest.fail(f"{doc}: jaxnn {' '.join(argv)}: {err.getvalue().strip() or e}")


def test_the_readme_links_every_doc():
    readme = (ROOT / "README.md").read_text()
    unlinked = [name_of(p) for p in DOCS[1:] if f"]({name_of(p)})" not in readme]
    assert not unlinked, f"README.md does not link {unlinked}"


def _names_in_docs():
    """Every ``jaxnn.x.y`` that README.md and docs/*.md name in backquotes, and every
    ``x.y`` whose ``x`` is a jaxnn module (``train.fit``), with its file."""
    import pkgutil

    import jaxnn

    modules = {m.name for m in pkgutil.iter_modules(jaxnn.__path__)}
    found = set()
    for path in DOCS:
        for dotted, first in re.findall(r"`((\w+)(?:\.\w+)+)", path.read_text()):
            if re.search(r"\.(py|md|json|png|npz|toml|txt)$", dotted):
                continue  # a file name
            if first == "jaxnn":
                found.add((name_of(path), dotted))
            elif first in modules:
                found.add((name_of(path), f"jaxnn.{dotted}"))
    return sorted(found)


@pytest.mark.parametrize(("doc", "dotted"), _names_in_docs())
def test_every_name_the_docs_give_exists(doc, dotted):
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            continue
        for attr in parts[i:]:
            assert hasattr(obj, attr), f"{doc} names {dotted}: no {attr}"
            obj = getattr(obj, attr)
        return
    pytest.fail(f"{doc} names {dotted}, which does not import")


# --- every public function is annotated (docs/interop.md says so) --------------------------
# Public: the functions in a module's __all__ (a module without one is skipped until it has
# one), judged where they are defined, so a re-export counts once. Parameters (``self``
# and ``cls`` aside, ``*args`` and ``**kwargs`` included) and the return need annotations.
# Not yet claimed, and so not checked (docs/interop.md says which): the modules below.
NOT_CLAIMED = {
    "jaxnn.activations": "sigma and sigma' on arrays: not annotated yet",
    "jaxnn.losses": "the costs and their gradients: not annotated yet",
    "jaxnn.verify": "the checking tools: not annotated yet",
    "jaxnn.bench": "the benchmark: not annotated yet",
    "jaxnn.cli": "the command line: no library API",
}


def _modules():
    import pkgutil

    import jaxnn

    names = ["jaxnn", *(m.name for m in pkgutil.walk_packages(jaxnn.__path__, "jaxnn."))]
    return [n for n in names if n != "jaxnn.__main__"]


def public_functions():
    """{defining module: {function name: function}} for every function named in an
    ``__all__``, wherever it is re-exported."""
    found = {}
    for name in _modules():
        module = importlib.import_module(name)
        for attr in getattr(module, "__all__", ()):
            obj = inspect.unwrap(getattr(module, attr))  # a name in __all__ must exist
            if inspect.isfunction(obj):
                found.setdefault(obj.__module__, {})[obj.__qualname__] = obj
    return found


def unannotated(fun) -> list[str]:
    """The parameters without an annotation, and ``return`` when it has none."""
    sig = inspect.signature(fun)
    missing = [
        p.name
        for p in sig.parameters.values()
        if p.annotation is inspect.Parameter.empty and p.name not in ("self", "cls")
    ]
    return missing + (["return"] if sig.return_annotation is inspect.Signature.empty else [])


def claimed(module: str) -> bool:
    return not any(module == m or module.startswith(m + ".") for m in NOT_CLAIMED)


def test_the_annotation_check_sees_what_is_missing():
    def typed(x: int, *args: int, k: str = "", **kwargs: float) -> int: ...

    def untyped(x, y: int = 0, *args, **kwargs): ...

    assert unannotated(typed) == []
    assert unannotated(untyped) == ["x", "args", "kwargs", "return"]
    assert not claimed("jaxnn.verify.gradients") and claimed("jaxnn.verification")


def test_every_public_function_is_annotated():
    found = public_functions()
    assert {"jaxnn.network", "jaxnn.backpropagation"} <= set(found), sorted(found)
    missing = [
        f"{module}.{name}: {', '.join(unannotated(fun))}"
        for module, functions in sorted(found.items())
        if claimed(module)
        for name, fun in sorted(functions.items())
        if unannotated(fun)
    ]
    assert not missing, "public functions without annotations:\n" + "\n".join(missing)


def test_each_module_not_claimed_still_needs_its_exemption():
    """A module of NOT_CLAIMED whose public functions all got annotations leaves the table
    (and docs/interop.md's list of exceptions)."""
    found = public_functions()
    done = [
        prefix
        for prefix, why in NOT_CLAIMED.items()
        if why.endswith("not annotated yet")
        and not any(
            unannotated(fun)
            for module, functions in found.items()
            if module == prefix or module.startswith(prefix + ".")
            for fun in functions.values()
        )
    ]
    assert not done, f"annotated now: remove {done} from NOT_CLAIMED and from docs/interop.md"
