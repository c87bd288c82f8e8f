"""The timing path: a fresh graph every round, rounds and warm-up as the options say, the
`pytest --benchmark` items, and `gradcheck-lab run --timings`."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import ClassVar

import pytest
import torch

from gradcheck_lab.casefile import build_case
from gradcheck_lab.diagnose.timing import (
    SampledTimings,
    TimedPass,
    TimingSettings,
    interquartile_range,
    measure,
)
from gradcheck_lab.doors.cli import main
from tests.conftest import CASES

COUNTING_IMPL = '''
import torch
from pathlib import Path

LOG = Path(__file__).with_name("calls.log")


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        with LOG.open("a") as log:
            log.write("forward\\n")
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        with LOG.open("a") as log:
            log.write("backward\\n")
        (x,) = ctx.saved_tensors
        return 2 * x * grad


def square_sum(x):
    return Square.apply(x).sum()
'''
COUNTING_CASE = """name: counted
inputs:
  x: [1.0, 2.0, 3.0]
output: sum(x * x)
impl: counting.py:square_sum
"""


class Counted(torch.autograd.Function):
    calls: ClassVar[dict[str, int]] = {"forward": 0, "backward": 0}

    @staticmethod
    def forward(ctx, x):
        Counted.calls["forward"] += 1
        return x * 3

    @staticmethod
    def backward(ctx, grad):
        Counted.calls["backward"] += 1
        return grad * 3


def test_every_backward_round_differentiates_its_own_fresh_graph() -> None:
    Counted.calls.update(forward=0, backward=0)
    case = build_case({"inputs": {"x": [1.0, 2.0]}, "output": "sum(x * 3)"}, label="t",
                      base_dir=None, default_name="t",
                      impl=lambda x: Counted.apply(x).sum())
    settings = TimingSettings(min_rounds=7, max_time=0.0, warmup_rounds=2)
    stats = measure(TimedPass(case, "float64", "cpu", "backward"), settings)
    pilots = 4  # one warm-up call and three pilot rounds size the rounds
    assert stats.rounds == 7
    assert Counted.calls["backward"] == 2 + pilots + 7
    # One forward per backward: no graph is reused (retain_graph would let it be).
    assert Counted.calls["forward"] == Counted.calls["backward"]
    assert stats.threads == 1
    assert stats.median_s > 0


def test_sampled_timings_keep_every_round_as_pytest_benchmark_runs_them() -> None:
    """`pytest --benchmark`'s timings in the worker: the pilots first, then the warm-up (at
    most the timed rounds where capped, as pytest-benchmark caps its warm-up iterations), and
    every round's seconds returned for pytest-benchmark's statistics."""
    case = build_case({"inputs": {"x": [1.0, 2.0]}, "output": "sum(x * 3)"}, label="t",
                      base_dir=None, default_name="t",
                      impl=lambda x: Counted.apply(x).sum())
    pilots = 4
    for warmup, capped, warmed in ((2, False, 2), (100, True, 5), (0, False, 0)):
        Counted.calls.update(forward=0, backward=0)
        settings = SampledTimings(min_rounds=5, max_time=0.0, warmup_rounds=warmup,
                                  warmup_capped=capped)
        stats = measure(TimedPass(case, "float64", "cpu", "forward"), settings)
        assert Counted.calls["forward"] == pilots + warmed + 5
        assert len(stats.samples) == stats.rounds == 5
        assert all(seconds > 0 for seconds in stats.samples)
        assert stats.to_json()["samples_s"] == list(stats.samples)
    plain = measure(TimedPass(case, "float64", "cpu", "forward"),
                    TimingSettings(min_rounds=3, max_time=0.0))
    assert plain.samples == () and "samples_s" not in plain.to_json()


def test_rounds_follow_min_rounds_and_max_time() -> None:
    settings = TimingSettings(min_rounds=5, max_time=1.0)
    assert settings.rounds_for(0.5) == 5
    assert settings.rounds_for(0.001) == 1000
    assert TimingSettings(max_rounds=50).rounds_for(1e-9) == 50


def test_interquartile_range() -> None:
    assert interquartile_range([1.0, 2.0, 3.0, 4.0, 5.0]) == 2.0
    assert interquartile_range([7.0]) == 0.0


def test_thread_count_is_fixed_while_timing_and_restored() -> None:
    before = torch.get_num_threads()
    case = build_case({"inputs": {"x": [1.0]}, "output": "sum(x)"}, label="t", base_dir=None,
                      default_name="t")
    stats = measure(TimedPass(case, "float64", "cpu", "forward"),
                    TimingSettings(min_rounds=3, max_time=0.0, threads=1))
    assert stats.threads == 1
    assert torch.get_num_threads() == before


@pytest.mark.slow
def test_cli_timings_adds_forward_and_backward_stats(tmp_path: Path, capsys) -> None:
    out = tmp_path / "out.json"
    assert main(["run", str(CASES / "r144.yaml"), "--timings", "--timing-rounds", "3",
                 "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())["results"]
    for which in ("forward", "backward"):
        stats = result["timings"][which]
        assert set(stats) == {"median_s", "iqr_s", "rounds", "threads", "timer"}
        assert stats["rounds"] >= 3 and stats["threads"] == 1 and stats["median_s"] > 0
    assert "bwd" in capsys.readouterr().out


def test_timings_are_absent_without_the_flag(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    assert main(["run", str(CASES / "r144.yaml"), "--json", str(out)]) == 0
    assert "timings" not in json.loads(out.read_text())["results"][0]


# -- pytest --benchmark ---------------------------------------------------------------------

def project(pytester: pytest.Pytester) -> Path:
    """A small project: r144 under cases/, a regular test, a benchmark suite."""
    (pytester.path / "cases").mkdir()
    shutil.copy(CASES / "r144.yaml", pytester.path / "cases" / "r144.yaml")
    pytester.makepyfile(test_regular="def test_regular():\n    assert True\n")
    (pytester.path / "benchmarks").mkdir()
    (pytester.path / "benchmarks" / "test_suite.py").write_text(
        "def test_suite(benchmark):\n    benchmark(sum, [1, 2, 3])\n")
    # A project that configures gradcheck-lab: its benchmark suites wait for --benchmark.
    pytester.makeini("[pytest]\ntestpaths = . cases\ngradcheck_benchmark_paths = benchmarks\n")
    return pytester.path


def collected(result: pytest.RunResult) -> list[str]:
    return [line.strip() for line in result.outlines if "::" in line]


def test_benchmark_option_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--help")
    assert any(line.lstrip().startswith("--benchmark ") for line in result.outlines)


def test_timing_items_only_with_benchmark(pytester: pytest.Pytester) -> None:
    project(pytester)
    plain = collected(pytester.runpytest("--collect-only", "-q"))
    assert "cases/r144.yaml::r144[float64-cpu]" in plain
    assert "test_regular.py::test_regular" in plain
    assert not any("forward" in item or "benchmarks/" in item for item in plain)
    timed = pytester.runpytest("--benchmark", "--collect-only", "-q")
    items = collected(timed)
    # cpu always; cuda where this machine has it (r144 lists cpu only).
    for device in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
        for which in ("forward", "backward"):
            assert f"cases/r144.yaml::r144[float64-{device}-{which}]" in items
    assert torch.cuda.is_available() or not any("cuda" in item for item in items)
    assert "benchmarks/test_suite.py::test_suite" in items
    assert "test_regular.py::test_regular" not in items
    assert "cases/r144.yaml::r144[float64-cpu]" not in items


@pytest.mark.slow
def test_benchmark_runs_rounds_as_the_options_say_on_fresh_graphs(
        pytester: pytest.Pytester) -> None:
    (pytester.path / "counting.py").write_text(COUNTING_IMPL)
    (pytester.path / "counted.yaml").write_text(COUNTING_CASE)
    result = pytester.runpytest_subprocess(
        "--benchmark", "counted.yaml", "-k", "cpu-backward", "--benchmark-min-rounds", "7",
        "--benchmark-max-time", "0", "-p", "no:cacheprovider")
    # counted.yaml's timings: forward and backward on cpu, and on cuda where there is one.
    result.assert_outcomes(passed=1, deselected=3 if torch.cuda.is_available() else 1)
    # An impl file is checked and timed in the worker: the check's calls, then the forward's
    # rounds (forward alone), then the backward's, each on a fresh graph (its forward in the
    # untimed setup, then the backward).
    calls = (pytester.path / "calls.log").read_text().split()
    pilots, warmup, rounds = 4, 3, 7
    each = pilots + warmup + rounds
    assert calls[-2 * each:] == ["forward", "backward"] * each
    assert calls[-3 * each:-2 * each] == ["forward"] * each
    assert any("counted[float64-cpu-backward]" in line for line in result.outlines)
    result.stdout.fnmatch_lines(["counted[[]float64-cpu-backward[]] * 7 * 1"])


@pytest.mark.slow
def test_benchmark_json_is_readable_by_pytest_benchmark_compare(
        pytester: pytest.Pytester) -> None:
    project(pytester)
    out = pytester.path / "out.json"
    result = pytester.runpytest_subprocess("--benchmark", "-k", "cpu", "--benchmark-max-time",
                                           "0.01", f"--benchmark-json={out}")
    # r144's timings (cpu, and cuda only where this machine has one), the suite and the
    # regular test; -k cpu keeps two.
    result.assert_outcomes(passed=2, deselected=4 if torch.cuda.is_available() else 2)
    data = json.loads(out.read_text())
    names = {bench["name"] for bench in data["benchmarks"]}
    assert names == {"r144[float64-cpu-forward]", "r144[float64-cpu-backward]"}
    assert {bench["group"] for bench in data["benchmarks"]} == {"r144"}
    assert all(bench["extra_info"]["threads"] == 1 for bench in data["benchmarks"])
    compare = shutil.which("pytest-benchmark", path=str(Path(sys.executable).parent))
    done = subprocess.run([compare, "compare", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "r144[float64-cpu-backward]" in done.stdout


@pytest.mark.slow
def test_cuda_items_skip_without_a_gpu(pytester: pytest.Pytester) -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the cuda items run")
    project(pytester)
    # A case that lists cuda gets cuda timings, skipped here; r144 (cpu only) gets none.
    (pytester.path / "cases" / "gpu.yaml").write_text(
        "name: gpu\ninputs: {x: 2.0}\noutput: x * x\ndevices: [cpu, cuda]\n")
    result = pytester.runpytest_subprocess("--benchmark", "-k", "cuda", "-rs")
    result.assert_outcomes(skipped=2, deselected=6)
    assert any("cuda is not available" in line for line in result.outlines)


@pytest.mark.slow
def test_timings_are_disabled_under_xdist(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    project(pytester)
    result = pytester.runpytest_subprocess("--benchmark", "-k", "cpu", "-n", "2", "-rs")
    result.assert_outcomes(skipped=2)  # workers do not report deselections
    assert any("disabled under pytest-xdist" in line for line in result.outlines)


def test_cuda_rows_show_the_speed_up_over_cpu() -> None:
    from gradcheck_lab.doors.report import timings_text

    cpu = {which: {"median_s": 2e-3, "iqr_s": 1e-4} for which in ("forward", "backward")}
    cuda = {which: {"median_s": 1e-4, "iqr_s": 1e-5} for which in ("forward", "backward")}
    assert timings_text(cuda, cpu) == ("fwd 100 µs ±10 µs (20.0× cpu) · "
                                       "bwd 100 µs ±10 µs (20.0× cpu)")
    assert timings_text(cpu) == "fwd 2.00 ms ±100 µs · bwd 2.00 ms ±100 µs"
