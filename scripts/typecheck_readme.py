"""The README's Python tour, type-checked as a user's own script: pyright reports nothing.

Usage: python scripts/typecheck_readme.py [--python PATH]

The tour (README.md, "A short tour", its first Python block, as tests/test_readme.py
runs it) is written to a temporary directory outside this repository and checked there
by pyright against the environment of ``--python`` (default: this interpreter), so
``import jaxnn`` resolves as it does for a user: through the installed package, not
through the repository's own folder. The README's install (``pip install -e ...
--config-settings editable_mode=compat``) puts the repository on the path with a plain
``.pth`` entry, which static checkers follow (setuptools' default editable install is an
import hook, which they cannot). Beside the tour, a probe with one deliberate type error
in a jaxnn call proves that jaxnn's types were read: pyright must report exactly that
error, and nothing in the tour. Exit status 0 when so, 1 otherwise (diagnostics printed).
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent

# A deliberate error: a Network is not an int. Seen only if pyright reads jaxnn's types.
PROBE = """import jaxnn

not_an_int: int = jaxnn.Network((2, 1), ("linear",))
"""


def readme_tour() -> str:
    """The README tour's first Python block, as tests/test_readme.py extracts it."""
    tour = (ROOT / "README.md").read_text().split("\n## A short tour\n")[1]
    return re.findall(r"```python\n(.*?)```", tour, re.S)[0]


def pyright(python: str, folder: pathlib.Path, files: list[str]) -> dict:
    """pyright's JSON report on ``files`` in ``folder``, against ``python``'s environment."""
    env = dict(os.environ, PYRIGHT_PYTHON_IGNORE_WARNINGS="1")  # no PyPI version query
    out = subprocess.run(
        [sys.executable, "-m", "pyright", "--outputjson", "--pythonpath", python, *files],
        cwd=folder,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        raise SystemExit(f"pyright gave no report (exit {out.returncode}):\n{out.stderr}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", default=sys.executable, help="the environment to check in")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = pathlib.Path(tmp)
        (folder / "readme_tour.py").write_text(readme_tour())
        (folder / "probe.py").write_text(PROBE)
        report = pyright(args.python, folder, ["readme_tour.py", "probe.py"])
    found = report.get("generalDiagnostics", [])
    for d in found:
        line = d.get("range", {}).get("start", {}).get("line", -1) + 1
        name = pathlib.Path(d.get("file", "?")).name
        print(f"{name}:{line}: {d.get('severity')}: {d.get('message')}")
    tour = [d for d in found if d.get("file", "").endswith("readme_tour.py")]
    probe = [d for d in found if d.get("file", "").endswith("probe.py")]
    probe_ok = len(probe) == 1 and probe[0].get("severity") == "error"
    probe_ok = probe_ok and "Network" in probe[0].get("message", "")
    summary = report.get("summary", {})
    print(
        f"pyright {report.get('version')}: the README tour {len(tour)} diagnostics, the probe "
        f"{'its one error' if probe_ok else 'NOT its one error'} "
        f"({summary.get('filesAnalyzed')} files, {summary.get('timeInSec')} s)"
    )
    return 0 if not tour and probe_ok else 1


if __name__ == "__main__":
    sys.exit(main())
