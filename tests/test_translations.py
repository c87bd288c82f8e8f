"""The traced forward's translation table (gradcheck_lab/trace/aten/) against torch itself.

Core ATen is the closed op set torch's forward decompositions reduce everything to: each of
its ops is translated, made a constant, or refused with a reason a user can read. Then every
operator torch's own test suite describes (its OpInfo database and their sample inputs) is
traced: where the trace succeeds, the program's value must be torch's and its rule-sweep VJP
must be torch autograd's, so a translation that misreads an argument fails here.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from gradcheck_lab.errors import SpecError
from gradcheck_lab.program.interpret import NUMPY, input_values, interpret
from gradcheck_lab.program.sweep import sweep
from gradcheck_lab.trace import UntraceableError, trace
from gradcheck_lab.trace.aten import coverage


def core_aten_ops() -> list[str]:
    """Every overload the installed torch tags as core ATen."""
    names = []
    for packet_name in dir(torch.ops.aten):
        packet = getattr(torch.ops.aten, packet_name, None)
        for overload in getattr(packet, "overloads", list)():
            if torch.Tag.core in getattr(packet, overload).tags:
                names.append(f"aten.{packet_name}.{overload}")
    return sorted(names)


def test_every_core_aten_op_is_translated_or_said_why_not() -> None:
    ops = core_aten_ops()
    assert len(ops) > 150, "torch tags no core ATen ops: the enumeration found nothing"
    unsaid = [name for name in ops if coverage(name) is None]
    assert not unsaid, f"core ATen ops with no translation and no stated reason: {unsaid}"


@pytest.mark.parametrize("name, expected", [
    ("aten.add.Tensor", "translated"),
    ("aten.split_with_sizes.default", "view"),
    ("aten.argmax.default", "constant"),
    ("aten.rand.default", "constant"),
    ("aten.bernoulli.p", "refused: it draws random numbers"),
    ("aten._fft_r2c.default", "refused: it works on complex values"),
    ("aten.convolution_backward.default", "refused: it is a backward kernel"),
    ("aten.add.out", "refused: it writes into a tensor given as out="),
])
def test_coverage_says_how_each_kind_of_op_is_handled(name: str, expected: str) -> None:
    assert (coverage(name) or "").startswith(expected)


# --- torch's OpInfo samples -------------------------------------------------------------------

SAMPLES_PER_OP = 3
# Where torch's own backward is wrong, it is no reference for ours (each confirmed by hand).
# Ops whose values torch leaves undefined (uninitialized memory), or runs only on cuda.
VALUES_UNDEFINED = {"empty_like", "new_empty", "new_empty_strided", "empty", "empty_strided",
                    "jiterator_unary", "jiterator_binary", "jiterator_4inputs_with_extra_args",
                    "jiterator_binary_return_by_ref", "jiterator_2inputs_2outputs"}
TORCH_BACKWARD_WRONG = {
    # d out/d input is 0 inside the written region and 1 outside; torch 2.13 returns the
    # reverse (the region's cotangent, zeros elsewhere).
    "as_strided_scatter",
}


def _op_infos() -> list[Any]:
    from torch.testing._internal.common_methods_invocations import op_db

    return [op for op in op_db if torch.float64 in op.supported_dtypes("cpu")]


def _flattened(sample: Any) -> tuple[list[torch.Tensor], Any]:
    """The sample's tensors (in order) and a function of them that calls the op."""
    tensors: list[torch.Tensor] = []

    def slot(value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            tensors.append(value.detach())
            return ("tensor", len(tensors) - 1)
        if isinstance(value, (list, tuple)):
            return type(value)(slot(v) for v in value)
        return value

    layout = (slot(sample.input), slot(tuple(sample.args)),
              {k: slot(v) for k, v in sample.kwargs.items()})
    return tensors, layout


def _filled(layout: Any, tensors: list[torch.Tensor]) -> Any:
    if isinstance(layout, tuple) and len(layout) == 2 and layout[0] == "tensor":
        return tensors[layout[1]]
    if isinstance(layout, (list, tuple)):
        return type(layout)(_filled(v, tensors) for v in layout)
    if isinstance(layout, dict):
        return {k: _filled(v, tensors) for k, v in layout.items()}
    return layout


def check_sample(op: Any, sample: Any) -> str:
    """Trace one sample; "untraced: ..." when the trace is refused, else "ok" after the
    value and the VJP have been held to torch's."""
    tensors, layout = _flattened(sample)
    if not tensors or any(t.is_complex() or t.layout != torch.strided for t in tensors):
        return "skipped: no dense real tensor input"
    tensors = [t.contiguous().clone() for t in tensors]  # as the tracer gets them
    if op.name in VALUES_UNDEFINED:
        return "skipped: torch leaves the values undefined (or runs it on cuda only)"
    names = [f"t{i}" for i in range(len(tensors))]
    values = {name: t.numpy() for name, t in zip(names, tensors, strict=True)}

    def forward(named: dict[str, torch.Tensor]) -> Any:
        inputs = [named[name] for name in names]
        first, args, kwargs = _filled(layout, inputs)
        return op.op(first, *args, **kwargs)

    try:
        expected = forward({n: t.clone() for n, t in zip(names, tensors, strict=True)})
    except RuntimeError:  # as_strided's partial views read beyond their own elements
        return "skipped: torch refuses the sample on contiguous copies"
    try:  # the trace runs as autograd does, its real inputs requiring grad
        forward({n: t.clone().requires_grad_(t.is_floating_point())
                 for n, t in zip(names, tensors, strict=True)})
    except RuntimeError:  # an in-place op (cauchy_, ...) on a leaf that requires grad
        return "skipped: torch refuses the sample on inputs that require grad"
    if not isinstance(expected, torch.Tensor) or not expected.is_floating_point():
        return "skipped: not one real tensor output"
    specs = [SimpleNamespace(name=name, shape=tuple(t.shape), is_integer=not t.is_floating_point(),
                             requires_grad=t.is_floating_point())
             for name, t in zip(names, tensors, strict=True)]
    case = SimpleNamespace(inputs=specs,
                           differentiable_inputs=[s for s in specs if s.requires_grad])
    try:
        program = trace(case, values, forward).program  # type: ignore[arg-type]
    except UntraceableError as exc:
        return f"untraced: {exc.op}: {exc.reason}"
    except SpecError as exc:
        return f"refused: {exc.message}"
    try:
        env = interpret(program, input_values(program, values), [program.output], NUMPY)
    except SpecError as exc:  # an op's value refused at this point (index_put's repeats)
        return f"refused at the point: {exc.message}"
    # A cast inside the forward is the identity for the spec (the precision oracle measures
    # what it costs): the value holds to the output dtype's own rounding.
    rtol = max(1e-9, 4 * float(torch.finfo(expected.dtype).eps))
    np.testing.assert_allclose(env[program.output], expected.to(torch.float64).numpy(),
                               rtol=rtol, atol=rtol * 1e-3,
                               err_msg=f"{op.name}: the traced program's value")
    # At an infinite or nan input or output the gradient is a convention (torch's
    # _safe_softmax gives 0 for a row of -inf, the composition of its parts nan; entr(x < 0)
    # is -inf, its torch gradient nan), and at a kink torch picks a subgradient: values only.
    finite = all(bool(torch.isfinite(t).all()) for t in [*tensors, expected]
                 if t.is_floating_point())
    if op.supports_autograd and finite and "subgradient" not in op.variant_test_name:
        _check_vjp(program, env, forward, names, tensors, op.name, max(1e-7, rtol))
    return "ok"


def _check_vjp(program: Any, env: Any, forward: Any, names: list[str],
               tensors: list[torch.Tensor], what: str, rtol: float) -> None:
    differentiated = [n for n, t in zip(names, tensors, strict=True) if t.is_floating_point()]
    leaves = {n: t.clone().requires_grad_(n in differentiated)
              for n, t in zip(names, tensors, strict=True)}
    try:
        out = forward(leaves)
    except RuntimeError as exc:  # running statistics, targets: torch takes no gradient
        assert "not differentiable with respect to" in str(exc), exc
        return
    if not out.requires_grad or what in TORCH_BACKWARD_WRONG:
        return
    cotangent = np.random.default_rng(0).standard_normal(tuple(out.shape))
    try:
        grads = torch.autograd.grad(out, [leaves[n] for n in names if leaves[n].requires_grad],
                                    torch.from_numpy(cotangent), allow_unused=True)
    except RuntimeError as exc:  # torch has no backward for this sample (scatter's reduce=)
        assert "not implemented" in str(exc), exc
        return
    ours = sweep(program, env, cotangent)
    for name, grad in zip([n for n in names if leaves[n].requires_grad], grads, strict=True):
        expected = (np.zeros(leaves[name].shape) if grad is None or grad._is_zerotensor()
                    else grad.numpy())
        scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
        np.testing.assert_allclose(ours[name], expected, rtol=rtol, atol=rtol * 1e-2 * scale,
                                   err_msg=f"{what}: the rule sweep's VJP for {name}")


@pytest.mark.slow
def test_every_traced_opinfo_sample_computes_torchs_value_and_gradient() -> None:
    """One item over torch's whole OpInfo database (imported only when it runs: it takes
    seconds): every failure is listed, by op and sample."""
    failures, outcomes = [], []
    for op in _op_infos():
        torch.manual_seed(0)
        samples = list(op.sample_inputs("cpu", torch.float64, requires_grad=False))
        for number, sample in enumerate(samples[:SAMPLES_PER_OP]):
            try:
                outcomes.append(check_sample(op, sample))
            except AssertionError as exc:
                failures.append(f"{op.name}.{op.variant_test_name} sample {number}: "
                                f"{str(exc).strip().splitlines()[-1][:300]}")
    traced = sum(outcome == "ok" for outcome in outcomes)
    assert traced > 500, f"only {traced} OpInfo samples were traced: the test checks nothing"
    assert not failures, "\n".join(failures)
