"""docs/derivations.md stays true: every function and test it cites exists, and every
equation tag in the code has its entry there."""

import ast
import importlib
import pathlib
import re

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


def test_every_equation_tag_in_the_code_is_documented():
    tags = set()
    for path in (ROOT / "jaxnn").glob("*.py"):
        tags |= set(re.findall(r"# \(([A-Z][A-Z0-9]*(?:-[A-Z0-9]+)*)\)", path.read_text()))
    assert {"BP1", "BP2", "BP3", "BP4", "S2", "F1", "OPT-A4"} <= tags, sorted(tags)
    missing = sorted(
        t for t in tags if f"({t})" not in DERIVATIONS and f"\\tag{{{t}}}" not in DERIVATIONS
    )
    assert not missing, f"tags in the code without an entry in docs/derivations.md: {missing}"
