"""The step benchmark's report: a markdown table, and the files the command line writes."""

import json
import os

__all__ = [
    "check_outputs",
    "markdown",
    "write_outputs",
]


def markdown(report: dict) -> str:
    """The report as a markdown table, one row per (batch, contender)."""
    lim = report["matmul_limit"]
    sizes = ", ".join(f"{n}: {r:.0f}" for n, r in lim["by_size"].items())
    lines = [
        f"Network {'-'.join(map(str, report['network']['sizes']))}, "
        f"{report['network']['activations'][0]} hidden, softmax + cross_entropy, "
        f"{report['dtype']}, {report['optimizer']}.",
        f"Best float32 matmul: {lim['best_gflops']:.0f} GFLOP/s (n x n, GFLOP/s by n: {sizes}).",
        "",
        "| batch | contender | median ms/step | x hand | GFLOP/s | of matmul limit "
        "| examples/s | peak memory |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        peak = f"{r['peak_bytes'] / 2**20:.1f} MiB" if r["peak_bytes"] >= 0 else "n/a"
        ratio = f"{r['vs_hand']:.2f}" if r["vs_hand"] is not None else "-"
        lines.append(
            f"| {r['batch']} | {r['contender']} | {r['median_ms']:.3f} | {ratio} "
            f"| {r['gflops']:.0f} | {100 * r['fraction_of_matmul']:.0f}% "
            f"| {r['examples_per_s']:,.0f} | {peak} |"
        )
    lines.append("")
    lines += _xla_lines(report.get("xla_products", {}))
    lines += [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def _xla_lines(products: dict) -> list[str]:
    """``dot_report`` in words: where XLA sends each gradient's matrix products."""
    lines = []
    for name, d in products.items():
        plain = d["plain_dots"]
        left = (
            f"{len(plain)} left to XLA's slower generic dot ({'; '.join(plain)})"
            if plain
            else "none left to XLA's slower generic dot"
        )
        lines.append(
            f"- XLA's compiled {name} gradient at batch 256: {d['library_fusions']} matrix "
            f"products run in the fast matmul library (YNNPACK fusions), {left}; "
            "see BENCHMARKS.md, 'What made each difference', 1"
        )
    return lines


def check_outputs(paths, force: bool) -> None:
    """Raise ValueError, before any work, if an output file exists and ``force`` is not
    set, or if its directory does not exist (the report would be lost after the run)."""
    for path in paths:
        if path and os.path.exists(path) and not force:
            raise ValueError(f"{path} already exists; pass --force to overwrite it")
        if path and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise ValueError(f"{path}: its directory does not exist; create it first")


def write_outputs(report: dict, table: str, json_path=None, markdown_path=None) -> None:
    """Write the report as JSON and its table as markdown, where asked."""
    if json_path:
        with open(json_path, "w") as f:
            json.dump(report, f, indent=2)
    if markdown_path:
        with open(markdown_path, "w") as f:
            f.write(table)
