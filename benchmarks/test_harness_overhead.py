"""The timing path adds nothing measurable: its median backward time of the MNIST MLP agrees
with a bare perf_counter loop within 5%, measured in the same run, interleaved block by block
so that drift in the machine's load hits both alike."""

from __future__ import annotations

import statistics

from bare_loop import bare_backward_seconds
from conftest import CASES

from gradcheck_lab.casefile import load_file
from gradcheck_lab.diagnose.timing import TimedPass, TimingSettings, measure

BLOCKS = 5
ROUNDS_PER_BLOCK = 60
AGREEMENT = 0.05


def test_timing_path_matches_a_bare_loop(benchmark) -> None:
    (case,) = load_file(CASES / "mnist_mlp_ce.yaml")
    timed = TimedPass(case, "float64", "cpu", "backward")
    settings = TimingSettings(min_rounds=ROUNDS_PER_BLOCK, max_time=0.0, threads=1)
    ours, bare = [], []
    for _ in range(BLOCKS):
        ours.append(measure(timed, settings).median_s)
        bare.append(bare_backward_seconds(case, ROUNDS_PER_BLOCK, threads=1))
    ratio = statistics.median(ours) / statistics.median(bare)
    benchmark.extra_info.update({"timing_path_median_s": statistics.median(ours),
                                 "bare_loop_median_s": statistics.median(bare),
                                 "ratio": ratio})
    benchmark.pedantic(lambda: None, rounds=1)
    print(f"\ntiming path {statistics.median(ours) * 1e6:.1f} us, bare loop "
          f"{statistics.median(bare) * 1e6:.1f} us, ratio {ratio:.3f}")
    assert abs(ratio - 1) <= AGREEMENT
