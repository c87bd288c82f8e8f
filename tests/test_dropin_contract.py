"""The drop-in keeps torch.autograd.gradcheck's contract (doors/dropin): arguments reach
``func`` as passed, func's own exceptions propagate, torch's refusals are torch's, complex
and empty inputs behave as in torch, GradcheckError is torch's too, reports speak of the
call; and ``pytest --gradcheck-dropin`` / ``dropin.install()`` switch a whole suite."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import time

import pytest
import torch
from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError

import gradcheck_lab
from gradcheck_lab import dropin
from gradcheck_lab.doors.dropin.arguments import OUTPUT_COPIES
from gradcheck_lab.doors.dropin.check import results_of
from gradcheck_lab.errors import BudgetError
from tests.conftest import REPO


def double(*shape: int, seed: int = 0, grad: bool = True) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float64, generator=generator).requires_grad_(grad)


class Huber(torch.autograd.Function):
    """A Function with named arguments and, planted, a backward missing its factor 1/2 on
    the quadratic branch."""

    @staticmethod
    def forward(ctx, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(pred - target)
        diff = pred - target
        return torch.where(diff.abs() < 1, 0.5 * diff**2, diff.abs() - 0.5).sum()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (diff,) = ctx.saved_tensors
        return grad * torch.where(diff.abs() < 1, 2 * diff, diff.sign()), None


def huber_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    return double(6, seed=1) * 0.4, double(6, seed=2, grad=False) * 0.1


def test_a_parameter_reaches_func_as_a_parameter_and_a_subclass_as_itself() -> None:
    class Tagged(torch.Tensor):
        pass

    weight = torch.nn.Parameter(double(3, grad=False))
    tagged = double(3, seed=1).as_subclass(Tagged)
    seen: list[tuple[type, type]] = []

    def uses_parameters(w: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append((type(w), type(t)))
        # A library that differentiates only what it finds as parameters.
        scale = w if isinstance(w, torch.nn.Parameter) else w.detach()
        return (scale * t.as_subclass(torch.Tensor)).sin().sum()

    assert gradcheck_lab.gradcheck(uses_parameters, (weight, tagged))
    assert set(seen) == {(torch.nn.Parameter, Tagged)}


def test_non_tensors_and_constants_reach_func_as_the_very_objects_given() -> None:
    labels = torch.tensor([True, False, True])
    options = {"power": 3}
    seen = []

    def masked(x: torch.Tensor, mask: torch.Tensor, settings: dict) -> torch.Tensor:
        seen.append((mask, settings))
        return (x[mask] ** settings["power"]).sum()

    assert gradcheck_lab.gradcheck(masked, (double(3), labels, options))
    assert all(mask is labels and settings is options for mask, settings in seen)


def test_strides_are_kept_and_a_stride_0_input_is_refused_as_torch_refuses_it() -> None:
    transposed = double(4, 3).detach().t().requires_grad_()
    strides = []

    def records_strides(x: torch.Tensor) -> torch.Tensor:
        strides.append(x.stride())
        return x.exp()

    assert gradcheck_lab.gradcheck(records_strides, (transposed,))
    assert set(strides) == {transposed.stride()}
    expanded = double(3, grad=False).expand(4, 3).requires_grad_()
    with pytest.raises(RuntimeError, match="stride 0") as ours:
        gradcheck_lab.gradcheck(torch.sin, (expanded,))
    with pytest.raises(RuntimeError) as torchs:
        torch.autograd.gradcheck(torch.sin, (expanded,))
    assert str(ours.value) == str(torchs.value)


def test_funcs_own_exception_propagates_unchanged() -> None:
    class SolverMissingError(ValueError):
        pass

    def needs_a_solver(x: torch.Tensor) -> torch.Tensor:
        raise SolverMissingError("no solver named 'dopri9'")

    with pytest.raises(SolverMissingError, match="dopri9"):
        gradcheck_lab.gradcheck(needs_a_solver, (double(2),))


def test_empty_and_0_d_inputs_behave_as_in_torch() -> None:
    empty = torch.zeros(0, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: t * 2, (empty,))
    assert gradcheck_lab.gradcheck(lambda t: t * 2, (empty,))
    # An empty input beside a real one: the real one is checked.
    assert gradcheck_lab.gradcheck(lambda t, e: t.sin().sum() + e.sum(), (double(2), empty))
    scalar = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    assert gradcheck_lab.gradcheck(torch.tanh, (scalar,))
    with pytest.raises(ValueError, match="at least one input tensor to require gradient"):
        gradcheck_lab.gradcheck(torch.sin, (double(2, grad=False),))


class SquareForgetsConj(torch.autograd.Function):
    """z**2 whose backward forgets the conjugate torch's convention needs."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(z)
        return z * z

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (z,) = ctx.saved_tensors
        return grad * 2 * z


def test_complex_inputs_are_checked_through_real_and_imaginary_parts() -> None:
    z = torch.randn(3, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    z.requires_grad_()
    assert gradcheck_lab.gradcheck(lambda w: (w * w.conj() * w).sin(), (z,))
    with pytest.raises(TorchGradcheckError) as caught:
        gradcheck_lab.gradcheck(SquareForgetsConj.apply, (z,))
    assert "z_real" in str(caught.value) and "z_imag" in str(caught.value)
    assert not torch.autograd.gradcheck(SquareForgetsConj.apply, (z,), raise_exception=False)


def test_a_correct_function_passes_whatever_torchs_keywords_ask() -> None:
    x = double(5)
    for keywords in ({"fast_mode": True}, {"check_batched_grad": True},
                     {"check_forward_ad": True}, {"check_undefined_grad": False},
                     {"eps": 1e-6, "atol": 1e-5, "rtol": 1e-3}):
        assert gradcheck_lab.gradcheck(torch.sinh, (x,), **keywords), keywords
    step = double(5)
    assert gradcheck_lab.gradcheck(lambda t: (t > 0).double(), (step,))
    assert gradcheck_lab.gradcheck(lambda t: (t > 0).double() * t, (step,))


def test_a_failure_is_either_kind_of_gradcheck_error_and_names_the_call_in_its_terms() -> None:
    pred, target = huber_inputs()
    with pytest.raises(gradcheck_lab.GradcheckError) as caught:
        gradcheck_lab.gradcheck(Huber.apply, (pred, target))
    assert isinstance(caught.value, TorchGradcheckError)
    assert isinstance(caught.value, RuntimeError)
    text = str(caught.value)
    assert text.startswith("gradcheck(Huber.apply): autograd is the odd one out: pred")
    for words in ("input0", "case file", "output:", "<check>", "_as_case"):
        assert words not in text
    assert not gradcheck_lab.gradcheck(Huber.apply, (pred, target), raise_exception=False)


def test_outputs_too_large_to_check_are_refused_before_anything_is_built() -> None:
    x = double(3)
    with pytest.raises(BudgetError) as refused:
        gradcheck_lab.gradcheck(lambda t: t[:1].expand(10_000, 10_000), (x,))
    assert "100,000,000 elements" in str(refused.value) and "\n" not in str(refused.value)
    # The same call fits a budget its outputs' copies fit in (here: a 4-element output).
    assert gradcheck_lab.gradcheck(lambda t: t[:1].expand(2, 2), (x,),
                                   memory=OUTPUT_COPIES * 8 * 4)
    with pytest.raises(BudgetError):
        gradcheck_lab.gradcheck(lambda t: t[:1].expand(2, 2), (x,),
                                memory=OUTPUT_COPIES * 8 * 4 - 1)


def test_install_switches_every_import_style_and_uninstall_puts_torchs_back() -> None:
    import importlib

    torch_module = importlib.import_module("torch.autograd.gradcheck")
    original = torch_module.gradcheck
    bound_early = {"gradcheck": original}  # as `from torch.autograd import gradcheck` binds
    module = type(sys)("a_suite_module")
    module.__dict__.update(bound_early)
    sys.modules["a_suite_module"] = module
    try:
        with dropin.switched():
            assert torch.autograd.gradcheck is gradcheck_lab.gradcheck
            assert torch_module.gradcheck is gradcheck_lab.gradcheck
            assert module.gradcheck is gradcheck_lab.gradcheck
            before = len(dropin.CALLS)
            pred, target = huber_inputs()
            assert not module.gradcheck(Huber.apply, (pred, target), raise_exception=False)
            assert dropin.CALLS[-1].status == "fail" and len(dropin.CALLS) == before + 1
        assert torch.autograd.gradcheck is original and module.gradcheck is original
    finally:
        del sys.modules["a_suite_module"]


SUITE = """\
import importlib

import torch
from torch.autograd import gradcheck
from torch.autograd.gradcheck import gradgradcheck

gradcheck_module = importlib.import_module("torch.autograd.gradcheck")


def double(n, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, dtype=torch.float64, generator=g).requires_grad_()


class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x * x * (1.0001 if PLANTED else 1.0)


PLANTED = False


def test_imported_name():
    assert gradcheck(torch.tanh, (double(4, 0),))


def test_attribute():
    assert torch.autograd.gradcheck(Cube.apply, (double(4, 1),))


def test_module_alias():
    assert gradcheck_module.gradgradcheck(torch.sin, (double(3, 2),))


def test_planted():
    global PLANTED
    PLANTED = True
    try:
        assert gradcheck(Cube.apply, (double(4, 3),))
    finally:
        PLANTED = False
"""


def test_the_pytest_flag_switches_a_suite_and_prints_the_summary(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    original = torch.autograd.gradcheck
    result = pytester.runpytest("--gradcheck-dropin", "-p", "no:cacheprovider", "--tb=short")
    result.assert_outcomes(passed=3, failed=1)
    result.stdout.fnmatch_lines([
        "*gradcheck-lab drop-in: 4 calls (3 gradcheck, 1 gradgradcheck)",
        "*three oracles (symbolic, autograd, finite differences): 4",
        "*verdicts: 3 pass, 1 fail",
        "*fail: *test_planted*gradcheck(Cube.apply): autograd is the odd one out: x*",
    ])
    assert "gradcheck_lab.GradcheckError" in result.stdout.str()
    assert torch.autograd.gradcheck is original  # put back at the session's end
    plain = pytester.runpytest("-p", "no:cacheprovider")
    plain.assert_outcomes(passed=4)  # torch's fast check misses the planted 1e-4


def test_the_ini_key_switches_too_and_a_failure_shows_the_tests_own_line_last(
        pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\ngradcheck_dropin = true\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--tb=short", "-k", "planted")
    result.assert_outcomes(failed=1, deselected=3)
    text = result.stdout.str()
    assert "gradcheck_lab/doors" not in text  # the drop-in's own frames are hidden
    trace = text[text.index("_ test_planted _"):text.index("E   gradcheck_lab.")]
    frames = re.findall(r"^(\S+\.py):\d+: in (\w+)$", trace, re.MULTILINE)
    assert frames == [("test_suite.py", "test_planted")]
    assert "assert gradcheck(Cube.apply, (double(4, 3),))" in trace


def test_compare_mode_reports_torchs_time_and_the_disagreement(
        pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--gradcheck-dropin=compare", "-p", "no:cacheprovider",
                                "-k", "planted or attribute")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([
        "*time: * s in gradcheck-lab; torch's calls * s (*x)",
        "*compared with torch's gradcheck: 1 disagreement(s)",
        "*test_planted*torch pass, gradcheck-lab fail*",
    ])


def test_importing_the_package_imports_neither_sympy_nor_matplotlib() -> None:
    script = textwrap.dedent("""\
        import sys
        import gradcheck_lab
        import gradcheck_lab.dropin
        print(sorted(m for m in ("sympy", "matplotlib", "torch") if m in sys.modules))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("kind", ["gradcheck", "gradgradcheck"])
def test_every_keyword_of_torchs_signature_is_taken_and_documented(kind: str) -> None:
    import inspect

    from gradcheck_lab.doors.dropin import KEYWORDS

    documented = {word.strip() for key in KEYWORDS for word in key.split(",")}
    torchs = inspect.signature(getattr(torch.autograd, kind)).parameters
    ours = inspect.signature(getattr(gradcheck_lab, kind)).parameters
    for name, parameter in torchs.items():
        assert name in ours and ours[name].kind == parameter.kind, name
        if name not in ("func", "inputs"):
            assert name in documented, name


def test_an_output_cut_from_the_graph_fails_as_in_torch_and_a_constant_one_passes() -> None:
    x = double(3)
    with pytest.raises(gradcheck_lab.GradcheckError, match="no output requires grad, yet"):
        gradcheck_lab.gradcheck(lambda t: t.detach() * 2, (x,))
    with pytest.raises(TorchGradcheckError):
        torch.autograd.gradcheck(lambda t: t.detach() * 2, (x,))
    assert gradcheck_lab.gradcheck(lambda t: t.detach() * 0 + 1, (x,))
    # A step exactly at the point: both sides agree, the central difference is 0, as torch's.
    ones = torch.ones(4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: (t == 1).double(), (ones,))
    assert gradcheck_lab.gradcheck(lambda t: (t == 1).double(), (ones,))


def test_a_nan_input_fails_naming_the_input_and_a_non_tensor_output_is_a_type_error() -> None:
    bad = torch.tensor([1.0, float("nan")], dtype=torch.float64, requires_grad=True)
    with pytest.raises(gradcheck_lab.GradcheckError, match=r"^gradcheck\(\S*<lambda>\): t: NaN"):
        gradcheck_lab.gradcheck(lambda t: t * 2, (bad,))
    with pytest.raises(TypeError, match="return tensors"):
        gradcheck_lab.gradcheck(lambda t: t.detach().sum().item(), (double(2),))


def test_a_keyword_out_of_its_range_is_a_value_error_naming_torchs_keyword() -> None:
    with pytest.raises(ValueError, match=r"^gradcheck: eps: .* leaves finite differences"):
        gradcheck_lab.gradcheck(torch.sin, (double(2),), eps=1e-300)


def test_torchs_zero_tolerances_mixed_dtypes_bfloat16_and_conjugate_outputs_pass_as_in_torch(
        ) -> None:
    x = double(4)
    assert gradcheck_lab.gradcheck(torch.sin, (x,), atol=0.0)
    assert gradcheck_lab.gradcheck(torch.sin, (x,), atol=1e-8, rtol=0.0)
    seen = []

    def mixed(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        seen.append((a.dtype, b.dtype))
        return (a * b.double()).sin()

    assert gradcheck_lab.gradcheck(mixed, (x, double(4, seed=1).float().detach()
                                          .requires_grad_()))
    # Each in the caller's own dtype where autograd is checked (finite differences and the
    # trace evaluate in float64, as for a case).
    assert (torch.float64, torch.float32) in seen
    low = double(4).detach().bfloat16().requires_grad_()
    assert gradcheck_lab.gradcheck(torch.tanh, (low,), atol=1e-2, rtol=1e-2)
    z = torch.randn(3, 3, dtype=torch.complex128, generator=torch.Generator().manual_seed(0))
    assert gradcheck_lab.gradcheck(lambda m: m.mH, (z.requires_grad_(),))


def test_a_subclass_keeps_its_metadata_and_an_integer_output_plays_no_part() -> None:
    class Tagged(torch.Tensor):
        pass

    tagged = double(3).detach().as_subclass(Tagged)
    tagged.unit = "m"
    tagged.requires_grad_()
    assert gradcheck_lab.gradcheck(lambda t: t.as_subclass(torch.Tensor) * {"m": 2.0}[t.unit],
                                   (tagged,))
    assert gradcheck_lab.gradcheck(lambda t: (t * 1e8).long(), (double(3),))


def test_a_dict_output_is_a_type_error_as_in_torch() -> None:
    with pytest.raises(TypeError, match="got dict"):
        gradcheck_lab.gradcheck(lambda t: {"y": t * 2}, (double(2),))


def test_a_func_that_reads_its_inputs_by_identity_is_refused_not_passed() -> None:
    model = torch.nn.Linear(3, 1).double()
    data = double(5, 3, grad=False)
    params = tuple(model.parameters())
    with pytest.raises(NotImplementedError, match="reads input 0 by identity"):
        gradcheck_lab.gradcheck(lambda *p: model(data).sum(), params)
    assert torch.equal(params[0], model.weight)  # the caller's tensors are as they were


def test_a_func_reading_one_input_by_identity_is_refused_though_another_is_reached() -> None:
    x, weight = double(3), double(3, seed=1)
    with pytest.raises(NotImplementedError, match="reads input 1 by identity"):
        gradcheck_lab.gradcheck(lambda a, w: (a * weight).sum(), (x, weight))


def test_a_check_calls_func_a_bounded_number_of_times() -> None:
    """On a real suite each call of func is most of a check's cost (their functions are
    Python-heavy): torch's first call, the trace, the precision measurement's centre (which
    finite differences move from), four along finite differences' direction, autograd's
    forward and its rerun on a fresh graph (two samples of the cost unit), one pass of the
    unit's own (``autograd.UNIT_SAMPLES``) and torch's own undefined-gradient check; no call
    of the drop-in's own analysis besides."""
    calls: list[int] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return x.sin() * 2

    assert gradcheck_lab.gradcheck(f, (double(5),))
    assert len(calls) <= 11


def test_a_scalar_outputs_scaled_probe_pass_stands_in_for_the_units_own_passes() -> None:
    """A scalar output's second cotangent is asked on a graph of its own: a forward+backward
    the cost unit takes as a sample, beside one pass of the unit's own (the calls above, and
    the scaled probe's forward: one fewer than the unit's two passes of before)."""
    calls: list[int] = []

    def f(x: torch.Tensor) -> torch.Tensor:
        calls.append(1)
        return (x.sin() * 2).sum()

    assert gradcheck_lab.gradcheck(f, (double(5),))
    assert len(calls) <= 12
    (result,), _ = results_of(f, (double(5),))
    assert result.counts["cost_units"] > 0

def test_nondet_tol_allows_a_backward_that_differs_run_to_run_by_that_much() -> None:
    class Noisy(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x: torch.Tensor) -> torch.Tensor:
            ctx.save_for_backward(x)
            return x.sin()

        @staticmethod
        def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
            (x,) = ctx.saved_tensors
            return grad * (x.cos() + 1e-7 * torch.randn_like(x))

    assert gradcheck_lab.gradcheck(Noisy.apply, (double(5),), nondet_tol=1e-5)
    assert not gradcheck_lab.gradcheck(Noisy.apply, (double(5),), raise_exception=False)


def test_a_nan_input_with_raise_exception_false_returns_false_and_every_call_is_recorded(
        ) -> None:
    bad = torch.tensor([1.0, float("nan")], dtype=torch.float64, requires_grad=True)
    before = len(dropin.CALLS)
    assert gradcheck_lab.gradcheck(lambda t: t * 2, (bad,), raise_exception=False) is False
    with pytest.raises(TypeError):
        gradcheck_lab.gradcheck(lambda t: {"y": t}, (double(2),))
    assert [c.status for c in dropin.CALLS[before:]] == ["fail", "error"]


def test_gradgradcheck_keeps_torchs_checks_of_its_own_keywords() -> None:
    with pytest.raises(RuntimeError, match="Mismatch in shape"):
        gradcheck_lab.gradgradcheck(lambda a: a ** 3, (double(4),),
                                    grad_outputs=(torch.ones(5, dtype=torch.float64),))
    with pytest.raises(AssertionError):
        gradcheck_lab.gradgradcheck(lambda a: a ** 3, (double(4),), check_fwd_over_rev=False,
                                    check_rev_over_rev=False)
    assert gradcheck_lab.gradgradcheck(lambda a: a ** 3, (double(4),), check_batched_grad=True)


def test_switched_blocks_nest_and_leave_the_outer_settings_in_place() -> None:
    from gradcheck_lab.doors.dropin import check as dropin_check

    defaults = dict(dropin_check.DEFAULTS)
    with dropin.switched(memory=123):
        with dropin.switched(mode="compare", memory=456):
            assert dropin_check.DEFAULTS["memory"] == 456 and dropin_check.COMPARE
        assert dropin.installed() and dropin_check.DEFAULTS["memory"] == 123
        assert not dropin_check.COMPARE
    assert not dropin.installed() and defaults == dropin_check.DEFAULTS


def test_a_func_that_calls_autograd_itself_is_checked_as_torch_checks_it() -> None:
    def force(a: torch.Tensor) -> torch.Tensor:
        energy = (a.sin() * a).sum()
        return torch.autograd.grad(energy, a, create_graph=True)[0]

    assert gradcheck_lab.gradcheck(force, (double(4),))


def test_a_power_with_a_tensor_exponent_is_checked_in_bounded_time() -> None:
    base = double(3, 4, grad=False).abs().add(0.5).requires_grad_()
    started = time.process_time()
    assert gradcheck_lab.gradcheck(torch.pow, (base, double(3, 4, seed=1)), seconds=120)
    assert dropin.CALLS[-1].oracles == 3
    assert time.process_time() - started < 60  # minutes of sympy root-finding before
