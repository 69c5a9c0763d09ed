"""docs/derivations.md stays true: every function and test it cites exists, and every
equation tag in the code has its entry there.

The code is every module under jaxnn/, subpackages included. A tag is a parenthesised
name with a digit or a hyphen, ``(BP1)``, ``(OPT-A4)``, ``(C-M)``, in a comment or a
docstring; a range ``(BP1-BP4)`` stands for each tag in it. Other parenthesised
capitals, ``(EMA)``, ``(Z)``, are words, not tags.
"""

import ast
import importlib
import io
import pathlib
import re
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
