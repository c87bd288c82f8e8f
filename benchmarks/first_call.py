"""What the first drop-in call of a fresh process costs, beside torch's first call.

    .venv/bin/python benchmarks/first_call.py [--runs 5]

Each run starts two fresh Python processes (one thread each), side by side in time: one
imports torch and calls ``torch.autograd.gradcheck`` once, the other imports torch and
gradcheck_lab and calls ``gradcheck_lab.gradcheck`` once, on the same function (a small
custom Function and a tanh MLP layer). Printed: the medians of import and first-call
seconds, and the difference; the target is at most 1 s more than torch's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

PROGRAM = """\
import json, sys, time
started = time.perf_counter()
import torch
torch.set_num_threads(1)
imported_torch = time.perf_counter()
if sys.argv[1] == "lab":
    import gradcheck_lab
    check = gradcheck_lab.gradcheck
else:
    check = torch.autograd.gradcheck
imported = time.perf_counter()


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x * x


g = torch.Generator().manual_seed(0)
x = torch.randn(8, dtype=torch.float64, generator=g).requires_grad_()
w = torch.randn(4, 8, dtype=torch.float64, generator=g).requires_grad_()
assert check(Cube.apply, (x,))
first = time.perf_counter()
assert check(lambda x, w: torch.tanh(w @ x), (x, w))
second = time.perf_counter()
print(json.dumps({"import_torch": imported_torch - started,
                  "import_rest": imported - imported_torch, "first_call": first - imported,
                  "second_call": second - first}))
"""


def one(kind: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-c", PROGRAM, kind], capture_output=True,
                          text=True, check=True, env={"OMP_NUM_THREADS": "1", "PATH": ""})
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs: dict[str, list[dict[str, float]]] = {"torch": [], "lab": []}
    for _ in range(args.runs):  # interleaved, so that both see the same machine
        for kind in runs:
            runs[kind].append(one(kind))
    print(f"medians of {args.runs} fresh processes each (seconds)")
    print(f"{'':24}{'torch':>10}{'gradcheck-lab':>15}{'difference':>12}")
    for key in ("import_torch", "import_rest", "first_call", "second_call"):
        a = statistics.median(r[key] for r in runs["torch"])
        b = statistics.median(r[key] for r in runs["lab"])
        print(f"{key:24}{a:10.3f}{b:15.3f}{b - a:12.3f}")
    total = {kind: statistics.median(r["import_rest"] + r["first_call"] for r in rs)
             for kind, rs in runs.items()}
    print(f"import + first call beyond import torch: torch {total['torch']:.3f} s, "
          f"gradcheck-lab {total['lab']:.3f} s: {total['lab'] - total['torch']:+.3f} s "
          "(target: at most +1 s)")


if __name__ == "__main__":
    main()
