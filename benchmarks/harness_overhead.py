"""The MNIST MLP's backward as `pytest --benchmark` times it, against a bare perf_counter loop.

Run: .venv/bin/python benchmarks/harness_overhead.py [--runs 3]

Each run times the backward with `pytest --benchmark -k "mnist_mlp_ce and cpu-backward"` (a
fresh process, the JSON read back) and with the bare loop of benchmarks/bare_loop.py (another
fresh process), alternately; prints each median and the median of medians of both.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BARE = """
import sys
sys.path.insert(0, "benchmarks")
from bare_loop import bare_backward_seconds
from gradcheck_lab.casefile import load_file
(case,) = load_file(__import__("pathlib").Path("cases/mnist_mlp_ce.yaml"))
print(bare_backward_seconds(case, rounds=1000, threads=1))
"""


def pytest_median(output: Path) -> float:
    subprocess.run([sys.executable, "-m", "pytest", "--benchmark", "-q", "-p", "no:cacheprovider",
                    "cases/mnist_mlp_ce.yaml", "-k", "cpu-backward",
                    "--benchmark-min-rounds", "1000", f"--benchmark-json={output}"],
                   cwd=REPO, check=True, capture_output=True)
    (bench,) = json.loads(output.read_text())["benchmarks"]
    return bench["stats"]["median"]


def bare_median() -> float:
    done = subprocess.run([sys.executable, "-c", BARE], cwd=REPO, check=True,
                          capture_output=True, text=True)
    return float(done.stdout.strip())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    ours, bare = [], []
    with tempfile.TemporaryDirectory() as scratch:
        for run in range(args.runs):
            ours.append(pytest_median(Path(scratch) / f"run{run}.json"))
            bare.append(bare_median())
            print(f"run {run + 1}: pytest --benchmark {ours[-1] * 1e6:8.1f} us   "
                  f"bare loop {bare[-1] * 1e6:8.1f} us")
    ratio = statistics.median(ours) / statistics.median(bare)
    print(f"median of medians: pytest --benchmark {statistics.median(ours) * 1e6:.1f} us, "
          f"bare loop {statistics.median(bare) * 1e6:.1f} us, ratio {ratio:.3f}")


if __name__ == "__main__":
    main()
