"""Plant faults in a copy of jaxnn and check that CI turns red on each.

Usage: python scripts/mutation_check.py [--only NAME ...] [--markdown PATH] [--list]

For each fault in ``FAULTS``: copy the repository's working tree (the files git
tracks or would track) to a temporary directory, apply the fault's textual edits
there (each anchored on code text that must occur exactly once, or the script
stops with an error: a fault that no longer applies is never reported as caught),
and run, with that copy first on ``PYTHONPATH``:

1. ``jaxnn verify`` as ``.ci/run`` runs it (same arguments), for faults in the
   gradient math, which the verification matrix is there to catch;
2. ``pytest -x -q`` on the test files most likely to catch it (a quick first look);
3. if neither failed, the whole suite, ``pytest -x -q -n 2``, as CI runs it.

A fault is *caught* when a step fails (CI would be red), *missed* when all pass.
Before any fault, the same steps run on an unchanged copy and must pass, so that
a failure is the fault's doing. The result is a markdown table.

The library itself is never touched; nothing here is imported by jaxnn or its tests.
"""

# ruff: noqa: E501 (the planted edits are code lines, kept verbatim on one line)
import argparse
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from typing import NamedTuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Fault(NamedTuple):
    name: str
    what: str  # the planted error, in words
    edits: tuple  # (path, anchor text, replacement), each anchor exactly once in its file
    tests: tuple  # test files (pytest arguments) to try first
    verify: bool = False  # also run `jaxnn verify` as .ci/run does


FAULTS = (
    Fault(
        "bce-sign",
        "BCE's fused output error with the wrong sign: y - a for a - y (F2)",
        (("jaxnn/losses.py", "    return A - Y  # (F2)", "    return Y - A  # (F2)"),),
        ("tests/test_losses.py", "tests/test_backprop.py"),
        verify=True,
    ),
    Fault(
        "missing-1/m",
        "delta^L without the mean's 1/m (C-M): gradients of the sum, not the mean",
        (
            (
                "jaxnn/backpropagation.py",
                "    return delta / m  # (C-M)",
                "    return delta  # (C-M)",
            ),
        ),
        ("tests/test_backprop.py",),
        verify=True,
    ),
    Fault(
        "bias-1/m-twice",
        "BP3 as a mean over examples instead of a sum: b's gradient divided by m twice",
        (
            (
                "jaxnn/backpropagation.py",
                '"b": jnp.sum(delta, axis=1, keepdims=True)',
                '"b": jnp.mean(delta, axis=1, keepdims=True)',
            ),
        ),
        ("tests/test_backprop.py",),
        verify=True,
    ),
    Fault(
        "relu-deriv-at-0",
        "relu'(0) = 1 instead of jax.nn's 0 (A6)",
        (
            (
                "jaxnn/activations.py",
                "return (Z > 0).astype(Z.dtype)",
                "return (Z >= 0).astype(Z.dtype)",
            ),
        ),
        ("tests/test_activations.py",),
        verify=True,
    ),
    Fault(
        "adam-bias-correction",
        "Adam's bias correction one step late: 1 - b^(t+1) for 1 - b^t (OPT-A3)",
        (
            (
                "jaxnn/optim.py",
                "c1, c2 = 1 - b1**t, 1 - b2**t",
                "c1, c2 = 1 - b1 ** (t + 1), 1 - b2 ** (t + 1)",
            ),
        ),
        ("tests/test_optim.py",),
    ),
    Fault(
        "momentum-no-dampening",
        "momentum's EMA without its (1 - beta): V = dW + beta V (OPT-M1)",
        (
            (
                "jaxnn/optim.py",
                "lambda dW, V: (1 - beta) * dW + beta * V, grads, state.mu)  # (OPT-M1)",
                "lambda dW, V: dW + beta * V, grads, state.mu)  # (OPT-M1)",
            ),
        ),
        ("tests/test_optim.py",),
    ),
    Fault(
        "checkpoint-wrong-epoch",
        "restore() without an epoch restores the oldest kept checkpoint, not the newest",
        (
            (
                "jaxnn/checkpoint.py",
                "            epoch = self.latest_epoch()\n            if epoch is None:",
                "            epoch = min(self.epochs(), default=None)\n            if epoch is None:",
            ),
        ),
        ("tests/test_checkpoint.py",),
    ),
    Fault(
        "parallel-sum-over-devices",
        "the data-parallel gradient summed over the devices instead of averaged (x N)",
        (
            (
                "jaxnn/parallel.py",
                'AXIS = "batch"\n',
                'AXIS = "batch"\n\n\ndef _summed(optimizer, mesh):\n'
                "    n = mesh.shape[AXIS]\n"
                "    update = lambda g, s, p=None: optimizer.update(jax.tree.map(lambda x: x * n, g), s, p)\n"
                "    return optax.GradientTransformation(optimizer.init, update)\n",
            ),
            (
                "jaxnn/parallel.py",
                "        step_fn(net, optimizer, gradients),",
                "        step_fn(net, _summed(optimizer, mesh), gradients),",
            ),
            (
                "jaxnn/parallel.py",
                "        net, optimizer, batch_size, gradients, lambda B:",
                "        net, _summed(optimizer, mesh), batch_size, gradients, lambda B:",
            ),
        ),
        ("tests/test_parallel_checks.py",),
    ),
    Fault(
        "parallel-batch-not-split",
        "make_parallel_step replicates the batch instead of splitting it over the devices",
        (
            (
                "jaxnn/parallel.py",
                "        in_shardings=(rep, rep, bat, bat),",
                "        in_shardings=(rep, rep, rep, rep),",
            ),
        ),
        ("tests/test_parallel_checks.py",),
    ),
    Fault(
        "verify-drops-a-configuration",
        "the verify matrix loses the (tanh, mse) output head",
        (("jaxnn/verify/matrix_program.py", '    ("tanh", "mse"),\n', ""),),
        ("tests/test_verify.py",),
        verify=True,
    ),
    Fault(
        "fit-casts-data-through-bfloat16",
        "fit casts the data to bfloat16 before the params' dtype",
        (
            (
                "jaxnn/train.py",
                "jnp.asarray(getattr(data, name), dtype) for name in DATA_FIELDS",
                "jnp.asarray(getattr(data, name), jnp.bfloat16).astype(dtype) for name in DATA_FIELDS",
            ),
        ),
        ("tests/test_float32.py",),
    ),
    Fault(
        "divergence-step-off-by-one",
        "NonFiniteCostError names the step before the first non-finite cost",
        (("jaxnn/train.py", "step = int(bad[0]) + 1", "step = max(int(bad[0]), 1)"),),
        ("tests/test_train.py",),
    ),
    Fault(
        "fit-misses-nonfinite-params",
        "fit no longer checks the parameters after an epoch",
        (("jaxnn/train.py", "        if not _all_finite(params):", "        if False:"),),
        ("tests/test_branches.py",),
    ),
    Fault(
        "same-shuffle-every-epoch",
        "every epoch draws the same permutation (no fold_in of the epoch)",
        (
            (
                "jaxnn/train.py",
                "jax.random.fold_in(shuffle_key, e)",
                "jax.random.fold_in(shuffle_key, 0)",
            ),
        ),
        ("tests/test_train.py", "tests/test_float32.py"),
    ),
    Fault(
        "signal-ignored",
        "jaxnn train notes SIGINT/SIGTERM but never stops early",
        (
            (
                "jaxnn/cli/train.py",
                "            return stop.signum is not None  # stop once this epoch is saved",
                "            return False",
            ),
        ),
        ("tests/test_cli.py::test_sigint_saves_and_resumes_bitwise",),
    ),
)


def copy_tree(destination: str) -> None:
    """The working tree's files that git tracks or would track, copied to destination."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for rel in filter(None, listed.split("\0")):
        source = os.path.join(ROOT, rel)
        if not os.path.isfile(source):  # deleted in the working tree
            continue
        target = os.path.join(destination, rel)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copy2(source, target)


def plant(fault: Fault, tree: str) -> None:
    """Apply the fault's edits in ``tree``; raise if an anchor is not there exactly once."""
    for path, anchor, replacement in fault.edits:
        full = os.path.join(tree, path)
        with open(full) as f:
            text = f.read()
        count = text.count(anchor)
        if count != 1:
            raise SystemExit(
                f"mutation_check: fault {fault.name}: its anchor occurs {count} times in "
                f"{path} (needs exactly 1); update FAULTS: {anchor!r}"
            )
        text = text.replace(anchor, replacement)
        try:  # a fault must be wrong math, not a file that no longer parses
            compile(text, full, "exec")
        except SyntaxError as e:
            raise SystemExit(f"mutation_check: {fault.name} breaks {path}'s syntax: {e}") from None
        with open(full, "w") as f:
            f.write(text)


def verify_argv() -> list[str] | None:
    """The arguments of .ci/run's ``jaxnn verify`` line, or None if it has none."""
    with open(os.path.join(ROOT, ".ci", "run")) as f:
        for line in f:
            match = re.match(r"\s*\.venv/bin/jaxnn\s+verify\b(.*)$", line)
            if match:
                return shlex.split(match.group(1).split("#")[0])
    return None


def run(argv: list[str], tree: str, timeout: int) -> tuple[bool, str, float]:
    """(passed, last lines of output, seconds) of ``argv`` run in ``tree``."""
    env = {
        **os.environ,
        "PYTHONPATH": tree,
        "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu"),
    }
    t0 = time.perf_counter()
    try:
        result = subprocess.run(
            argv, cwd=tree, env=env, capture_output=True, text=True, timeout=timeout
        )
        passed, output = result.returncode == 0, result.stdout + result.stderr
    except subprocess.TimeoutExpired as e:
        passed, output = False, f"timed out after {timeout} s: {e}"
    return passed, output, time.perf_counter() - t0


def first_failure(output: str) -> str:
    """The first failing test (pytest's FAILED/ERROR line) and the error it ended with,
    so that a reader can tell a fault caught by a check from one that merely crashed;
    for jaxnn verify, its closing line."""
    for line in output.splitlines():
        if line.startswith(("FAILED ", "ERROR ")):
            test = line.split(" - ")[0].split(" ", 1)[1]
            errors = [
                l.strip("E ").strip()
                for l in output.splitlines()
                if re.match(r"E\s+\w+(Error|Exception)\b", l) and "Traceback" not in l
            ]
            return f"{test} ({errors[-1][:120]})" if errors else test
    if "FAIL" in output and "configurations pass" not in output:
        lines = [l for l in output.splitlines() if "FAIL" in l]
        return "jaxnn verify: " + lines[-1].strip()[:80]
    lines = [l for l in output.splitlines() if l.strip()]
    return lines[-1].strip()[:100] if lines else "(no output)"


def check(fault: Fault | None, full_suite: bool) -> dict:
    """Run the steps on a copy with ``fault`` planted (None: the unchanged copy)."""
    python = sys.executable
    with tempfile.TemporaryDirectory(prefix="jaxnn-mutant-") as tree:
        copy_tree(tree)
        if fault is not None:
            plant(fault, tree)
        steps = []
        verify = verify_argv()
        if fault is None or fault.verify:
            steps.append(("jaxnn verify", [python, "-m", "jaxnn", "verify", *(verify or [])], 900))
        tests = sorted({t for f in FAULTS for t in f.tests}) if fault is None else fault.tests
        pytest = [python, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider"]
        steps.append(
            (
                "tests " + " ".join(os.path.basename(t) for t in tests),
                [*pytest, *(["-n", "2"] if fault is None else []), *tests],
                1500,
            )
        )
        if full_suite:
            steps.append(("whole suite", [*pytest, "-n", "2"], 1800))
        seconds = 0.0
        for label, argv, timeout in steps:
            passed, output, took = run(argv, tree, timeout)
            seconds += took
            if not passed:
                return {
                    "caught": True,
                    "by": f"{label}: {first_failure(output)}",
                    "seconds": seconds,
                    "output": output,
                }
        return {"caught": False, "by": "-", "seconds": seconds, "output": ""}


def markdown(rows: list[tuple[Fault, dict]], verify: list[str] | None) -> str:
    lines = [
        "| fault | planted | result | first red | seconds |",
        "|---|---|---|---|---:|",
    ]
    for fault, r in rows:
        result = "caught" if r["caught"] else "**missed**"
        by = r["by"].replace("|", "\\|")
        lines.append(f"| {fault.name} | {fault.what} | {result} | {by} | {r['seconds']:.0f} |")
    caught = sum(r["caught"] for _, r in rows)
    lines.append("")
    lines.append(f"{caught} of {len(rows)} planted faults turn CI red.")
    lines.append(
        "`jaxnn verify` ran as .ci/run runs it: "
        + (f"`jaxnn verify {shlex.join(verify)}`" if verify else "`jaxnn verify` (no arguments)")
    )
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--only", nargs="+", metavar="NAME", help="only these faults")
    p.add_argument("--markdown", metavar="PATH", help="also write the table to PATH")
    p.add_argument("--list", action="store_true", help="list the faults and exit")
    p.add_argument("--no-baseline", action="store_true", help="skip the unchanged copy's run")
    args = p.parse_args(argv)
    faults = [f for f in FAULTS if not args.only or f.name in args.only]
    if args.only and len(faults) != len(args.only):
        p.error(f"unknown fault; choose from {', '.join(f.name for f in FAULTS)}")
    if args.list:
        for f in faults:
            print(f"{f.name}: {f.what}")
        return 0
    with tempfile.TemporaryDirectory() as tree:  # every fault applies, before anything runs
        copy_tree(tree)
        for f in faults:
            plant(f, tree)
            copy_tree(tree)  # undo it
    if not args.no_baseline:
        base = check(None, full_suite=False)
        print(
            f"baseline (unchanged copy): {'FAILED' if base['caught'] else 'passed'} "
            f"in {base['seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        if base["caught"]:
            print(base["output"][-3000:], file=sys.stderr)
            return 2
    rows = []
    for f in faults:
        r = check(f, full_suite=True)
        print(
            f"{f.name}: {'caught' if r['caught'] else 'MISSED'} ({r['by']}) "
            f"in {r['seconds']:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        rows.append((f, r))
    table = markdown(rows, verify_argv())
    print(table, end="")
    if args.markdown:
        with open(args.markdown, "w") as out:
            out.write(table)
    return 0 if all(r["caught"] for _, r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
