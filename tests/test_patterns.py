"""Diagnosis lines (compare.patterns): each pattern said for a mismatch of that shape and for
nothing else; on real failures, under the mismatch table, in the JSON, and with the backward
under test located. (tests/test_zoo.py holds every planted bug of the zoo to its pattern.)"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from gradcheck_lab import check
from gradcheck_lab.compare.findings import agree
from gradcheck_lab.compare.patterns import Probed, diagnose
from gradcheck_lab.doors.render import failure_text

SHAPE = (3, 3)
RNG = np.random.default_rng(5)
TRUTHS = [RNG.standard_normal(9) for _ in range(3)]  # symbolic at three probes
BOUND = 1e-9


def probes(autograd: list[np.ndarray], truths: list[np.ndarray] = TRUTHS) -> list[Probed]:
    bound = np.full(9, BOUND)
    return [Probed(s, a, bound, agree(s, a, bound))
            for s, a in zip(truths, autograd, strict=True)]


def said(autograd: list[np.ndarray], truths: list[np.ndarray] = TRUTHS) -> str | None:
    return diagnose("W", SHAPE, probes(autograd, truths), scales_with_cotangent=True)


def one_off(s: np.ndarray) -> np.ndarray:
    a = s.copy()
    a[4] += 0.5
    return a


@pytest.mark.parametrize("autograd, expected", [
    ([-s for s in TRUTHS], "autograd = -1 × symbolic on every element of W: a sign error"),
    ([2 * s for s in TRUTHS], "autograd = 2 × symbolic on every element of W: a missing or"),
    ([s / 3 for s in TRUTHS], "autograd = 1/3 × symbolic on every element of W"),
    ([-s / 2 for s in TRUTHS], "autograd = -1/2 × symbolic"),
    ([0.9999 * s for s in TRUTHS], "with c = 0.9999: a wrong constant"),
    ([s.reshape(SHAPE).T.reshape(-1) for s in TRUTHS], "the gradient is transposed"),
    ([TRUTHS[0]] * 3, "does not scale with grad_output"),
    ([np.zeros(9)] * 3, "is zero on every element: no gradient flows"),
    ([one_off(s) for s in TRUTHS], "one element of W differs, W[1, 1]; every other agrees"),
], ids=["sign", "two", "third", "minus half", "constant", "transposed", "grad_output", "zero",
        "one element"])
def test_each_pattern_is_said_for_its_mismatch(autograd: list[np.ndarray],
                                               expected: str) -> None:
    diagnosis = said(autograd)
    assert diagnosis is not None and expected in diagnosis, diagnosis


def noisy(s: np.ndarray, seed: int) -> np.ndarray:
    return s + 0.1 * np.random.default_rng(seed).standard_normal(s.shape)


@pytest.mark.parametrize("autograd, truths", [
    ([noisy(s, i) for i, s in enumerate(TRUTHS)], TRUTHS),  # wrong with no pattern
    ([s * (1 + 0.1 * np.arange(9)) for s in TRUTHS], TRUTHS),  # not one constant
    ([np.where(np.arange(9) < 2, s + 1, s) for s in TRUTHS], TRUTHS),  # two elements
    ([np.ones(9)] * 3, [np.zeros(9)] * 3),  # the truth is zero: no ratio to speak of
    ([np.full(9, np.nan)] * 3, TRUTHS),  # not a number
    ([2 * s for s in TRUTHS[:1]], TRUTHS[:1]),  # one probe: a factor, never grad_output
], ids=["noise", "varying ratio", "two elements", "zero truth", "nan", "one probe"])
def test_no_pattern_is_said_where_none_fits(autograd: list[np.ndarray],
                                            truths: list[np.ndarray]) -> None:
    diagnosis = said(autograd, truths)
    if len(truths) == 1:
        assert diagnosis is not None and "2 ×" in diagnosis
        assert diagnose("W", SHAPE, probes(autograd, truths),
                        scales_with_cotangent=False) == diagnosis
        return
    assert diagnosis is None, diagnosis


def test_a_symmetric_gradient_is_never_called_transposed() -> None:
    symmetric = [(s.reshape(SHAPE) + s.reshape(SHAPE).T).reshape(-1) for s in TRUTHS]
    assert said([noisy(s, 1) for s in symmetric], symmetric) is None


class SquareTwice(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * x

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return 4 * grad * x  # the derivative is 2x


def test_a_failure_shows_its_diagnosis_under_the_table_and_in_the_json() -> None:
    (result,) = check("x * x", {"x": [[0.5, -1.0], [2.0, 0.3]]},
                      impl=lambda x: SquareTwice.apply(x))
    assert result.status == "fail"
    assert result.diagnoses[0] == (
        "autograd = 2 × symbolic on every element of x: a missing or extra factor")
    assert result.diagnoses[1].startswith("the backward under test: SquareTwice.backward (")
    assert result.diagnoses[1].endswith(f"test_patterns.py:{_def_line('def backward')})")
    text = failure_text(result).splitlines()
    # Under the table and the legend of its "@..." notation: the first diagnosis.
    first = next(i for i, line in enumerate(text) if line.startswith("diagnosis: "))
    assert text[first] == f"diagnosis: {result.diagnoses[0]}"
    assert text[first - 1].startswith("@output[i]: ") and text[first - 2].endswith("e-08")
    assert json.loads(json.dumps(result.to_json()))["diagnoses"] == result.diagnoses


def test_a_passing_result_has_no_diagnosis() -> None:
    (result,) = check("x * x", {"x": [0.5, -1.0]})
    assert result.status == "pass" and result.diagnoses == []


def _def_line(text: str) -> int:
    from pathlib import Path

    lines = Path(__file__).read_text(encoding="utf-8").splitlines()
    start = next(i for i, line in enumerate(lines) if "class SquareTwice" in line)
    return next(i for i in range(start, len(lines)) if text in lines[i]) + 1
