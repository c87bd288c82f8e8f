"""The drop-in gradcheck (doors/dropin.py): torch.autograd.gradcheck's signature, the spec
traced from func's forward, three oracles. A suite written for torch's passes unchanged with
the import swapped, and fails with GradcheckError when the Functions' backwards are wrong."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gradcheck_lab import GradcheckError, gradcheck, gradgradcheck

SUITE = Path(__file__).resolve().parent / "data" / "dropin"
TORCH_IMPORT = "from torch.autograd import gradcheck, gradgradcheck"
OUR_IMPORT = "from gradcheck_lab import gradcheck, gradgradcheck"


def run_suite(tmp_path: Path, swapped: bool, planted: bool) -> subprocess.CompletedProcess:
    for name in ("functions.py", "test_suite_for_torch.py"):
        shutil.copy(SUITE / name, tmp_path / name)
    suite = tmp_path / "test_suite_for_torch.py"
    text = suite.read_text()
    assert TORCH_IMPORT in text
    if swapped:
        suite.write_text(text.replace(TORCH_IMPORT, OUR_IMPORT))
    env = {**os.environ, "GRADCHECK_LAB_PLANTED": "1" if planted else "0"}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-p", "no:gradcheck_lab", str(suite)], capture_output=True,
                          text=True, cwd=tmp_path, env=env)


@pytest.mark.slow
def test_the_suite_passes_with_torchs_gradcheck_and_with_ours(tmp_path: Path) -> None:
    assert run_suite(tmp_path, swapped=False, planted=False).returncode == 0
    ours = run_suite(tmp_path, swapped=True, planted=False)
    assert ours.returncode == 0, ours.stdout[-3000:]
    assert "4 passed" in ours.stdout


@pytest.mark.slow
def test_the_planted_suite_fails_every_test_with_gradcheck_error(tmp_path: Path) -> None:
    ours = run_suite(tmp_path, swapped=True, planted=True)
    assert ours.returncode == 1
    assert "4 failed" in ours.stdout, ours.stdout[-3000:]
    assert ours.stdout.count("gradcheck_lab.GradcheckError") >= 4
    assert "autograd is the odd one out" in ours.stdout


def double(*shape: int, grad: bool = True) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, requires_grad=grad,
                       generator=torch.Generator().manual_seed(0))


@pytest.mark.slow
def test_a_failure_raises_a_runtime_error_with_the_table_or_returns_false() -> None:
    class Wrong(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.exp()

        @staticmethod
        def backward(ctx, grad):
            return grad * 2

    with pytest.raises(RuntimeError) as caught:
        gradcheck(Wrong.apply, (double(3),))
    assert isinstance(caught.value, GradcheckError)
    assert "autograd is the odd one out: x" in str(caught.value)
    assert "symbolic" in str(caught.value) and "fin. diff." in str(caught.value)
    assert gradcheck(Wrong.apply, (double(3),), raise_exception=False) is False


@pytest.mark.slow
def test_torchs_own_rules_hold() -> None:
    with pytest.raises(ValueError, match="at least one input tensor to require gradient"):
        gradcheck(torch.sin, (double(3, grad=False),))
    assert gradcheck(torch.sin, double(3))  # a lone tensor, not a tuple
    assert gradgradcheck(torch.tanh, (double(2, 2),))


def test_an_untraceable_forward_is_checked_two_ways_never_by_torchs_gradcheck(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from gradcheck_lab.doors import dropin

    def torchs(*args: object, **kwargs: object) -> bool:
        raise AssertionError("torch's gradcheck decided a verdict")

    monkeypatch.setattr(torch.autograd, "gradcheck", torchs)
    assert gradcheck(lambda x: torch.erfinv(x.tanh() * 0.5), (double(3),))
    call = dropin.CALLS[-1]
    assert (call.oracles, call.status) == (2, "pass")
    assert call.missing.startswith("the traced forward ran aten.erfinv.default")

    class WrongErfinv(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return torch.erfinv(x)

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return -grad * 0.5 * torch.pi ** 0.5 * torch.exp(torch.erfinv(x) ** 2)  # sign

    with pytest.raises(GradcheckError, match="autograd is the odd one out against finite "
                                             "differences"):
        gradcheck(WrongErfinv.apply, (torch.tensor([0.1, -0.3, 0.4], dtype=torch.float64,
                                                   requires_grad=True),))


def test_explicit_tolerances_replace_the_derived_ones() -> None:
    class SlightlyOff(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x * x

        @staticmethod
        def backward(ctx, grad):
            (x,) = ctx.saved_tensors
            return grad * 2 * x * (1 + 1e-6)  # off by 1e-6 relative

    assert not gradcheck(SlightlyOff.apply, (double(3),), raise_exception=False)
    assert gradcheck(SlightlyOff.apply, (double(3),), rtol=1e-3, atol=1e-5)


def test_eps_is_the_step_finite_differences_take() -> None:
    seen: list[float] = []

    def square(x: torch.Tensor) -> torch.Tensor:
        seen.append(float(x.detach()[0]))
        return x * x

    assert gradcheck(square, (torch.tensor([0.5], dtype=torch.float64, requires_grad=True),),
                     eps=0.25)
    # Central differences at h and 2h around 0.5 (max(1, |x|) = 1): the given step, not 1e-6.
    offsets = {round(abs(value - 0.5), 9) for value in seen}
    assert {0.25, 0.5} <= offsets
    assert 1e-6 not in offsets


def test_torchs_default_eps_given_for_float32_inputs_is_not_refused() -> None:
    # torch's gradcheck takes eps=1e-6 whatever the dtype; a case file in float32 may not go
    # below 1.2e-5 (casefile.schema.fd_step_range): the drop-in takes that floor instead of
    # refusing a suite that spells torch's default out.
    seen: list[float] = []

    def square(x: torch.Tensor) -> torch.Tensor:
        seen.append(float(x.detach().double()[0]))
        return x * x

    x = torch.tensor([0.5, 1.5], dtype=torch.float32, requires_grad=True)
    assert gradcheck(square, (x,), eps=1e-6, atol=1e-3, rtol=1e-2)
    from gradcheck_lab.casefile.schema import fd_step_range

    floor = fd_step_range("float32")[0]
    assert any(abs(abs(value - 0.5) - floor) < 1e-12 for value in seen)
    with pytest.raises(ValueError, match="eps"):
        gradcheck(square, (x,), eps=1e-300)


@pytest.mark.parametrize("sign", [1.0, -1.0], ids=["correct", "sign_flipped"])
def test_mixed_dtypes_are_stepped_at_the_narrowest_ones_precision(sign: float) -> None:
    # The output is cast to float16 (the narrowest input's dtype): under a float64 step it
    # does not move at all, which once read as float64 precision, took h = 1e-6, and blamed
    # a correct function's forward. The step is float16's, and a wrong backward still fails.
    class Cube(torch.autograd.Function):
        @staticmethod
        def forward(ctx, b):
            ctx.save_for_backward(b)
            return b ** 3

        @staticmethod
        def backward(ctx, grad):
            (b,) = ctx.saved_tensors
            return sign * 3 * grad * b ** 2

    a = torch.tensor([1.0, 2.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0, 2.0], dtype=torch.float16, requires_grad=True)
    passed = gradcheck(lambda a, b: (a * Cube.apply(b.double())).sum(), (a, b),
                       raise_exception=False)
    assert passed is (sign == 1.0)
