"""The zoo (tests/data/zoo/): verdicts to trust. Every planted backward bug in bugs/ must fail,
with autograd named as the odd oracle where the three oracles can localise it; every correct
but numerically awkward function in correct/ must pass. One test id per case file.

What the tool cannot do yet, or gets wrong, stays in the zoo as a strict xfail with the
reason: it turns into XPASS (and so a failure to act on) the day the feature or fix lands.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

import gradcheck_lab
from gradcheck_lab import Result
from tests.conftest import DATA

ZOO = DATA / "zoo"
BUGS = sorted((ZOO / "bugs").glob("*.yaml"))
CORRECT = sorted((ZOO / "correct").glob("*.yaml"))

# Bugs that no first-order, single-backward check can see: the feature each one waits for.
NOT_CAUGHT_YET: dict[str, str] = {}
# (Backwards under no_grad or on detached tensors were here until `order: 2` checked the
# gradient of the gradient; a ctx-stateful backward until it ran twice through one graph.)


# Caught (status fail), but the odd oracle is not named although finite differences decide it.
NOT_LOCALISED: dict[str, str] = {}

# Correct functions the tool flags: false failures, each one a tool bug to fix (not to hide).
# (Saturated sigmoid and tanh, and float32 underflow in softmax, were here until the bounds
# learnt the terms of torch's derivative formulas and the dtype's smallest normal number.)
FALSE_FAILURES: dict[str, str] = {}


@functools.cache
def results_of(path: Path) -> tuple[Result, ...]:
    # Once per file and process: a case file is a fresh sympy and torch run, and a stateful
    # impl must see its first call here, whichever test asks first.
    return tuple(gradcheck_lab.run_file(path))


def params(paths: list[Path], marked: dict[str, str]) -> list:
    return [pytest.param(path, id=path.stem,
                         marks=[pytest.mark.xfail(strict=True, reason=marked[path.stem])]
                         if path.stem in marked else [])
            for path in paths]


def describe(result: Result) -> str:
    return f"{result.label}: {result.status}: {result.message}"


def test_the_zoo_is_big_enough_and_its_marks_name_real_cases() -> None:
    assert len(BUGS) >= 40 and len(CORRECT) >= 40
    stems = {path.stem for path in BUGS}
    assert set(NOT_CAUGHT_YET) | set(NOT_LOCALISED) <= stems
    assert set(FALSE_FAILURES) <= {path.stem for path in CORRECT}


@pytest.mark.slow
@pytest.mark.parametrize("path", params(BUGS, NOT_CAUGHT_YET))
def test_planted_bug_fails(path: Path) -> None:
    results = results_of(path)
    assert results, "no results"
    for result in results:
        # A bug case checks an impl; "error" would mean the case file itself is broken.
        assert "impl" in result.oracles.get("autograd", ""), describe(result)
        assert result.status == "fail", describe(result)


# The diagnosis line each kind of planted bug gets (compare.patterns), by the file's prefix:
# the whole gradient off by a sign, a factor or a constant, ignoring grad_output, no gradient,
# one element, transposed. Every other kind (a missing product-rule term, a transposed
# operand inside the backward, a wrong sign on one term, NaN, state kept on ctx, second
# order) gets none: a pattern that fits only some elements is not said.
DIAGNOSIS_BY_PREFIX = {
    "sign_": "a sign error",
    "factor_": "a missing or extra factor",
    "scaled_": "a wrong constant",
    "ignored_grad_": "does not scale with grad_output",
    "none_": "is zero on every element: no gradient flows",
    "one_element_": "every other agrees",
    "transposed_gradient_": "the gradient is transposed",
}
DIAGNOSIS_OF = {
    "sign_log_softmax": None,  # the sign of one term of two
    "reduction_mean_as_sum": "autograd = 5 × symbolic",
    "reduction_sum_as_mean": "autograd = 1/6 × symbolic",
    "reduction_cross_entropy_not_averaged": "autograd = 4 × symbolic",
    "reduction_mean_wrong_count": "with c = 0.4: a wrong constant",
    "reduction_sum_wrong_dim": "the gradient is transposed",
}


def expected_diagnosis(stem: str) -> str | None:
    if stem in DIAGNOSIS_OF:
        return DIAGNOSIS_OF[stem]
    return next((said for prefix, said in DIAGNOSIS_BY_PREFIX.items()
                 if stem.startswith(prefix)), None)


@pytest.mark.parametrize("path", params([p for p in BUGS if p.stem not in NOT_CAUGHT_YET],
                                        NOT_LOCALISED))
def test_planted_bug_names_autograd_as_the_odd_oracle_and_its_diagnosis(path: Path) -> None:
    for result in results_of(path):
        assert result.status == "fail", describe(result)
        odd = {m.odd_oracle for m in result.mismatches}
        # Symbolic and finite differences are right by construction: only autograd may be
        # blamed, and it must be blamed somewhere.
        assert odd == {"autograd"}, f"{describe(result)}; odd oracles {odd}"
        located = [d for d in result.diagnoses if d.startswith(LOCATED)]
        patterns = [d for d in result.diagnoses if not d.startswith(LOCATED)]
        # Every planted bug is a custom Function's backward, in a file of this folder.
        assert len(located) == 1 and f"{ZOO.name}/bugs/" in located[0], result.diagnoses
        expected = expected_diagnosis(path.stem)
        if expected is None:
            assert patterns == [], describe(result)
        else:
            assert patterns and all(expected in d for d in patterns), result.diagnoses


LOCATED = "the backward under test: "


@pytest.mark.parametrize("path", params(CORRECT, FALSE_FAILURES))
def test_correct_function_passes(path: Path) -> None:
    results = results_of(path)
    assert results, "no results"
    for result in results:
        assert result.status == "pass", describe(result)
