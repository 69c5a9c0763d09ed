"""curves.png's drawing process (jaxnn.cli.curves): the same bytes as drawn in this
process, a fallback when that process fails, and a process light enough to start."""

import ast
import math
import pathlib

import pytest

pytest.importorskip("matplotlib")

from jaxnn.cli import curves

HISTORY = [
    {"epoch": e, "train_cost": 1.0 / e, "test_cost": 1.2 / e, "train_accuracy": 0.5 + e / 20,
     "test_accuracy": 0.4 + e / 20, "val_cost": None if e == 2 else 1.1 / e,
     "val_accuracy": 0.45 + e / 20}
    for e in range(1, 6)
]  # fmt: skip


@pytest.mark.slow
def test_the_drawing_process_sends_the_png_drawn_here():
    expected = curves.draw(HISTORY, "accuracy", "digits: (64, 10, 10), adam", best=3)
    assert expected[:8] == b"\x89PNG\r\n\x1a\n"
    with curves.Plotter() as plotter:
        plotter.start()
        process = plotter.process
        assert process is not None
        png = plotter.draw(HISTORY, "accuracy", "digits: (64, 10, 10), adam", best=3)
    assert process.returncode == 0  # it answered: the bytes are its own
    assert png == expected


def test_a_failed_drawing_process_falls_back_to_drawing_here():
    expected = curves.draw(HISTORY, "r2", "a title")
    with curves.Plotter() as plotter:
        plotter.start()
        process = plotter.process
        process.kill()
        process.wait()
        png = plotter.draw(HISTORY, "r2", "a title")
    assert process.returncode != 0
    assert png == expected


def test_a_plotter_never_asked_ends_its_process():
    with curves.Plotter() as plotter:
        plotter.start()
        process = plotter.process
    assert process.returncode is not None
    assert plotter.process is None


def test_not_finite_values_are_gaps_not_errors():
    history = [dict(r, test_cost=math.nan if r["epoch"] == 3 else r["test_cost"]) for r in HISTORY]
    png = curves.draw(history, "accuracy", "t")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_drawing_module_imports_nothing_heavy():
    # Run by its path in isolated mode, it must not import jaxnn (whose import jax takes
    # a second) nor anything but the standard library at its top.
    tree = ast.parse(pathlib.Path(curves.__file__).read_text())
    top = {
        alias.name.split(".")[0]
        for node in tree.body
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom)}
    assert top <= {"io", "json", "math", "os", "signal", "subprocess", "sys"}, top
