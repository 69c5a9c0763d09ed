"""The command line's surface: ``--version``, one error prefix everywhere, and ``jaxnn
verify``'s summary and its gate (a failing row, no rows, or fewer configurations than
CI expects all exit 1 with one line).

``jaxnn verify`` runs here against a stand-in for ``jaxnn.verify`` that returns the rows
each test builds; the real matrix runs in tests/test_verify.py and in CI.
"""

import importlib.metadata
import json
import pathlib
import re
import sys
import types

import numpy as np
import pytest

import jaxnn
from jaxnn.cli import verify as cli_verify
from tests.helpers import VERIFY_CONFIGURATIONS
from tests.test_cli import run, run_subprocess

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_version_is_the_package_version():
    pyproject = (ROOT / "pyproject.toml").read_text()
    version = re.search(r'^version = "([^"]+)"', pyproject, re.M).group(1)
    status, stdout, stderr = run("--version")
    assert status == 0 and stderr == ""
    jax_version = importlib.metadata.version("jax")
    assert stdout.startswith(f"jaxnn {version} (jax {jax_version}")
    assert jaxnn.__version__ == version


@pytest.mark.parametrize(
    "argv",
    [
        [],  # argparse, top level
        ["bogus"],
        ["train", "--epochs", "x"],  # argparse, under a subcommand
        ["verify", "--expect", "x"],
        ["bench", "--bogus"],
        ["train", "--optimizer", "adamw"],  # jaxnn's own checks
        ["verify", "--expect", "0"],
    ],
    ids=lambda argv: " ".join(argv) or "no command",
)
def test_every_error_has_one_prefix_and_one_line(argv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, stdout, stderr = run(*argv)
    assert status == 2 and stdout == ""
    assert stderr.startswith("jaxnn: error: ") and stderr.count("\n") == 1, stderr


@pytest.mark.slow
def test_subprocess_subcommand_error_has_the_same_prefix():
    result = run_subprocess("verify", "--expect", "x")
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr == (
        "jaxnn: error: argument --expect: invalid int value: 'x' (see 'jaxnn verify --help')\n"
    )


# --- jaxnn verify, wired to a stand-in for jaxnn.verify ------------------------------------


def row(depth=1, hidden="tanh", output="linear", loss="mse", fused=True, ok=True):
    return {
        "depth": depth,
        "hidden": hidden,
        "output": output,
        "loss": loss,
        "fused": fused,
        "ok": ok,
        "error": np.float64(1e-12),  # a numpy scalar, as the real rows' numbers are
    }


def all_rows():
    return [row(*config[:2], *config[2:4], config[4]) for config in sorted(VERIFY_CONFIGURATIONS)]


@pytest.fixture
def fake_verify(monkeypatch):
    """Stand in for jaxnn.verify; returns the list whose rows run_matrix will return."""
    rows = []
    fake = types.ModuleType("jaxnn.verify")
    fake.run_matrix = lambda: list(rows)
    fake.format_table = lambda rows: f"TABLE {len(rows)}"
    fake.format_summary = lambda rows, more="": f"SUMMARY {len(rows)}\n{more}"
    fake.check_weight_decay = lambda: [
        {"output": "linear", "loss": "mse", "dtype": d, "error": 0.0, "tolerance": 1e-4, "ok": True}
        for d in ("float64", "float32")
    ]
    monkeypatch.setitem(sys.modules, "jaxnn.verify", fake)
    monkeypatch.setattr(jaxnn, "verify", fake, raising=False)
    return rows


def test_verify_prints_the_summary_and_the_full_table_on_request(fake_verify, tmp_path):
    fake_verify += all_rows()
    n = len(VERIFY_CONFIGURATIONS)
    status, stdout, stderr = run("verify")
    assert (status, stderr) == (0, "")
    assert stdout.startswith(f"SUMMARY {n}\n") and "jaxnn verify --full" in stdout
    status, stdout, stderr = run("verify", "--full", "--json", str(tmp_path / "rows.json"))
    assert (status, stderr) == (0, "") and stdout.startswith(f"TABLE {n}\nweight decay (C-L2)")
    assert "2/2 ok over 1 heads x float64, float32" in stdout
    rows = json.loads((tmp_path / "rows.json").read_text())
    assert len(rows) == n and rows[0]["error"] == 1e-12


def test_verify_fails_on_a_failing_row_and_still_writes_json(fake_verify, tmp_path):
    fake_verify += [row(), row(fused=False, ok=False)]
    path = tmp_path / "rows.json"
    status, stdout, stderr = run("verify", "--json", str(path))
    assert status == 1 and stdout.startswith("SUMMARY 2")
    assert stderr == "jaxnn: error: 1 of 2 configurations fail (see the rows above)\n"
    assert [r["ok"] for r in json.loads(path.read_text())] == [True, False]


def test_verify_fails_when_nothing_ran(fake_verify):
    """all([]) is true: an empty matrix must not pass, with or without --expect."""
    for argv in (["verify"], ["verify", "--expect", str(len(VERIFY_CONFIGURATIONS))]):
        status, _, stderr = run(*argv)
        assert status == 1
        assert stderr == (
            "jaxnn: error: the verify matrix ran no configuration: nothing was verified\n"
        )


def test_verify_fails_when_a_configuration_is_dropped(fake_verify):
    expected = len(VERIFY_CONFIGURATIONS)
    fake_verify += all_rows()[1:]  # one configuration fewer, every row passing
    status, _, stderr = run("verify")
    assert status == 0  # without --expect, nothing to count against
    status, _, stderr = run("verify", "--expect", str(expected))
    assert status == 1 and stderr.count("\n") == 1
    head = f"jaxnn: error: ran {expected - 1} configurations, expected {expected}"
    assert stderr.startswith(head)
    assert "dropped" in stderr


def test_verify_fails_when_configurations_were_added_or_repeat(fake_verify):
    rows = all_rows()
    fake_verify += [*rows, row(depth=4)]
    status, _, stderr = run("verify", "--expect", str(len(rows)))
    assert status == 1 and "configurations were added: raise --expect" in stderr
    fake_verify[-1] = rows[0]  # a duplicate stands in for a dropped configuration
    status, _, stderr = run("verify", "--expect", str(len(rows) + 1))
    assert status == 1
    assert f"{len(rows) + 1} rows hold only {len(rows)} distinct configurations" in stderr


def test_verify_passes_with_the_expected_count(fake_verify):
    fake_verify += all_rows()
    status, _, stderr = run("verify", "--expect", str(len(VERIFY_CONFIGURATIONS)))
    assert (status, stderr) == (0, "")


def test_problems_with_names_every_problem_at_once():
    rows = [row(ok=False), row(ok=False)]
    assert cli_verify.problems_with(rows, expect=3) == [
        "2 rows hold only 1 distinct configurations",
        "ran 1 configurations, expected 3 (--expect): a configuration was dropped",
        "2 of 2 configurations fail (see the rows above)",
    ]
    assert cli_verify.problems_with(all_rows(), expect=len(VERIFY_CONFIGURATIONS)) == []


def test_ci_gates_on_the_tests_own_count():
    """.ci/run passes --expect with the count of the tests' independent table."""
    ci = (ROOT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if re.search(r"\bjaxnn verify\b", line)]
    assert len(commands) == 1, commands
    expect = re.search(r"--expect (\d+)", commands[0])
    assert expect, f".ci/run runs jaxnn verify without --expect: {commands[0]}"
    assert int(expect.group(1)) == len(VERIFY_CONFIGURATIONS)
