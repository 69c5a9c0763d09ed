"""jaxnn.tabular.read_table against pyarrow.csv.read_csv on a large CSV: time and peak memory.

Usage: python scripts/bench_csv.py [--rows 1000000] [--cols 50] [--rounds 5] [--dir DIR]
                                   [--json FILE]

Writes a CSV of ``rows`` x ``cols`` float features (4 decimals) and an integer class
target (10 classes) into ``--dir`` (a temporary directory by default; a file already
there of the right size is reused), then:

* time: over ``rounds`` rounds, interleaved (the order alternates each round), the
  wall time of ``pyarrow.csv.read_csv(path)`` alone and of ``read_table(path)``
  (which reads, checks every cell and builds the float64 ``X`` and encoded ``y``);
  medians and their ratio. Issue 21's target: at most 1.5x.
* memory: each reader once in a fresh interpreter, which imports everything first and
  then reports its resident set's high-water mark (``VmHWM`` in /proc/self/status)
  above the resident set before the read, and Arrow's pool peak
  (``pyarrow.default_memory_pool().max_memory()``; tracemalloc does not see Arrow's
  allocations). Against the data as float32 (rows x cols x 4 bytes); the target: at
  most 3x. ``read_table`` returns float64 features, 2x the float32 data by themselves.

The machine's load average is printed beside the numbers: the timings are only as
good as the machine is quiet.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

_CHILD = r"""
import json, sys
import numpy as np, pyarrow as pa, pyarrow.compute, pyarrow.csv
from jaxnn.tabular import read_table

def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024

mode, path = sys.argv[1], sys.argv[2]
before = status("VmRSS")
if mode == "read_table":
    result = read_table(path)
    shape = list(result.X.shape)
else:
    result = pyarrow.csv.read_csv(path)
    shape = [result.num_rows, result.num_columns]
print(json.dumps({
    "rss_before": before, "hwm": status("VmHWM"), "rss_after": status("VmRSS"),
    "pool_max": pa.default_memory_pool().max_memory(),
    "pool_now": pa.total_allocated_bytes(), "shape": shape,
}))
"""


def write_csv(path: str, rows: int, cols: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv

    rng = np.random.default_rng(0)
    columns = {f"f{j}": np.round(rng.standard_normal(rows), 4) for j in range(cols)}
    columns["label"] = rng.integers(0, 10, rows)
    pyarrow.csv.write_csv(pa.table(columns), path)


def load() -> str:
    return " ".join(open("/proc/loadavg").read().split()[:3])


def memory(mode: str, path: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, mode, path], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(out.splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--cols", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--dir", help="where the CSV is written (and reused); a temporary one")
    parser.add_argument("--json", help="also write the results here as JSON")
    args = parser.parse_args(argv)

    import pyarrow.csv

    from jaxnn.tabular import read_table

    directory = args.dir or tempfile.mkdtemp(prefix="jaxnn-bench-csv-")
    path = os.path.join(directory, f"bench_{args.rows}x{args.cols}.csv")
    if not os.path.exists(path):
        start = time.perf_counter()
        write_csv(path, args.rows, args.cols)
        print(f"wrote {path} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    load_before = load()

    readers = {
        "pyarrow.csv.read_csv": lambda: pyarrow.csv.read_csv(path),
        "jaxnn.tabular.read_table": lambda: read_table(path),
    }
    times = {name: [] for name in readers}
    for r in range(args.rounds):
        order = list(readers) if r % 2 == 0 else list(reversed(readers))
        for name in order:
            start = time.perf_counter()
            result = readers[name]()
            times[name].append(time.perf_counter() - start)
            del result
    medians = {name: statistics.median(t) for name, t in times.items()}
    mem = {name.split(".")[-1]: memory(name.split(".")[-1], path) for name in readers}
    load_after = load()

    float32 = args.rows * args.cols * 4
    ratio = medians["jaxnn.tabular.read_table"] / medians["pyarrow.csv.read_csv"]
    peak = {k: v["hwm"] - v["rss_before"] for k, v in mem.items()}
    mb = 1e6
    rows = [
        (
            "median time (s)",
            *(f"{medians[n]:.2f}" for n in readers),
            f"{ratio:.2f}x (target <= 1.5x)",
        ),
        (
            "peak RSS above start (MB)",
            f"{peak['read_csv'] / mb:.0f}",
            f"{peak['read_table'] / mb:.0f}",
            f"{peak['read_table'] / float32:.2f}x the float32 data (target <= 3x)",
        ),
        (
            "Arrow pool peak (MB)",
            f"{mem['read_csv']['pool_max'] / mb:.0f}",
            f"{mem['read_table']['pool_max'] / mb:.0f}",
            "",
        ),
    ]
    size = os.path.getsize(path)
    print(
        f"{args.rows:,} rows x {args.cols} float columns + an int target, "
        f"{size / mb:.0f} MB of CSV; float32 data {float32 / mb:.0f} MB; "
        f"{os.cpu_count()} CPUs; load average {load_before} before, {load_after} after; "
        f"times over {args.rounds} interleaved rounds: "
        + "; ".join(f"{n}: {', '.join(f'{t:.2f}' for t in times[n])}" for n in readers)
    )
    print()
    print("| | pyarrow.csv.read_csv | jaxnn.tabular.read_table | read_table / read_csv |")
    print("|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    if args.json:
        results = {
            "rows": args.rows, "cols": args.cols, "csv_bytes": size, "float32_bytes": float32,
            "cpus": os.cpu_count(), "load_before": load_before, "load_after": load_after,
            "times_s": times, "median_s": medians, "time_ratio": ratio,
            "memory": mem, "peak_rss_above_start": peak,
            "peak_over_float32": peak["read_table"] / float32,
        }  # fmt: skip
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
