"""One numpy, BLAS or LAPACK call runs to its end whatever the case budget says: an op whose
single call would take more than MAX_KERNEL_FLOPS operations (an SVD of 4,000 x 4,000, a
product of two 7,071 x 7,071 matrices) is refused by its shape rule, counted from the
shapes, before anything is allocated. And the resampling ops (one_hot, adaptive pooling,
interpolate) and logcumsumexp's complex step hold memory that grows with their input and
result, never with a dense helper matrix (np.eye(num_classes), out x in weights, n x n).

Bounded by memory (tracemalloc traces numpy's allocations) and by refusals, not by time."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import gradcheck_lab
from gradcheck_lab.errors import SpecError
from gradcheck_lab.ops import OPS
from gradcheck_lab.ops.base import MAX_KERNEL_FLOPS, ArgInfo
from gradcheck_lab.ops.matrix import KERNEL_FLOPS, PART

MiB = 2**20
SQUARE = (4000, 4000)


def real(*shape: int) -> ArgInfo:
    return ArgInfo(tuple(shape), is_integer=False)


def defaults(name: str, **params: Any) -> dict[str, Any]:
    return {**{p.name: p.default for p in OPS[name].params}, **params}


def peak_of(function: Callable[[], Any]) -> tuple[Any, int]:
    """``function()`` and the most memory it held at once, in bytes (numpy's included)."""
    tracemalloc.start()
    try:
        value = function()
        return value, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# Each op at a size it refuses: (op, arguments, params).
COSTLY: list[tuple[str, list[ArgInfo], dict[str, Any]]] = [
    *((name, [real(*SQUARE)], defaults(name, **({PART: 0} if name in ("svd", "eigh", "qr",
                                                                      "slogdet") else {})))
      for name in sorted(KERNEL_FLOPS)),
    ("svd", [real(3, 2000, 2000)], defaults("svd", **{PART: 1})),  # one call for the batch
    ("solve", [real(*SQUARE), real(4000, 1)], defaults("solve")),
    ("matmul", [real(7071, 7071), real(7071, 7071)], {}),
    ("matmul", [real(100, 1000, 1000), real(1000, 1000)], {}),  # batched
    ("linear", [real(4000, 4000), real(4000, 4000)], {}),
    ("bmm", [real(100, 1000, 1000), real(100, 1000, 1000)], {}),
    ("einsum", [real(3000, 3000), real(3000, 3000)], {"equation": "ij,jk->ik"}),
    ("conv2d", [real(8, 256, 64, 64), real(256, 256, 3, 3)], defaults("conv2d")),
    ("conv_transpose2d", [real(8, 256, 64, 64), real(256, 256, 3, 3)],
     defaults("conv_transpose2d")),
]


@pytest.mark.parametrize(("name", "args", "params"), COSTLY,
                         ids=[f"{n}-{'x'.join(map(str, a[0].shape))}" for n, a, _ in COSTLY])
def test_a_single_call_past_the_limit_is_refused_by_the_shape_rule(
        name: str, args: list[ArgInfo], params: dict[str, Any]) -> None:
    def refuse() -> str:
        with pytest.raises(SpecError) as refused:
            OPS[name].shape(args, params)
        return str(refused.value)

    message, peak = peak_of(refuse)
    assert "operations in one call (limit 1e+10), which the case budget cannot stop" in message
    assert message.startswith(f"{name}(): ")
    assert "\n" not in message
    assert peak < 10 * MiB


ALLOWED: list[tuple[str, list[ArgInfo], dict[str, Any]]] = [
    ("svd", [real(64, 700, 40)], defaults("svd", full_matrices=False, **{PART: 0})),
    ("eigh", [real(500, 500)], defaults("eigh", **{PART: 1})),
    ("matmul", [real(1500, 1500), real(1500, 1500)], {}),
    # Pre-summed by numpy before its one product: 10^12 index tuples, 2·10^7 operations.
    ("einsum", [real(1000, 1000), real(1000, 1000)], {"equation": "ij,kl->"}),
]


@pytest.mark.parametrize(("name", "args", "params"), ALLOWED, ids=[n for n, _, _ in ALLOWED])
def test_calls_under_the_limit_keep_their_shapes(name: str, args: list[ArgInfo],
                                                 params: dict[str, Any]) -> None:
    assert OPS[name].shape(args, params) is not None


def test_the_limit_is_the_einsum_contractions_limit() -> None:
    from gradcheck_lab.ops.contractions import MAX_CONTRACTION_FLOPS

    assert MAX_KERNEL_FLOPS == MAX_CONTRACTION_FLOPS == 10**10


@pytest.mark.slow
def test_an_svd_past_the_limit_is_an_error_at_its_key_before_its_input_exists() -> None:
    inputs = {"A": {"shape": [4000, 4000], "init": "randn"}}
    with pytest.raises(gradcheck_lab.CaseError,
                       match=r"svd\(\): a 4000 x 4000 A would take about 1\.7e\+12 operations "
                             r"in one call \(limit 1e\+10\)"):
        peak_of(lambda: gradcheck_lab.check("sum(svd(A)[0])", inputs))
    (result,) = gradcheck_lab.check("sum(svd(A)[1])", {"A": {"shape": [4, 3],
                                                             "init": "randn"}},
                                    dtypes=["float64"])
    assert result.status == "pass", result.message


# --- helpers sized by a parameter, not by the input -------------------------------------------


def test_one_hot_of_many_classes_holds_its_result_not_an_identity_matrix() -> None:
    classes = 200_000  # np.eye(200_000) of int64 is 298 GiB
    index = np.array([3, 0, classes - 1])
    out, peak = peak_of(lambda: OPS["one_hot"].numpy([index], {"num_classes": classes}))
    assert out.dtype == np.int64 and out.shape == (3, classes)
    assert out.sum() == 3 and out[0, 3] == out[1, 0] == out[2, classes - 1] == 1
    assert peak < 4 * out.nbytes


@pytest.mark.parametrize(("name", "params"), [
    ("adaptive_avg_pool1d", {"output_size": 40_000}),
    ("adaptive_avg_pool1d", {"output_size": 3}),
    ("interpolate", defaults("interpolate", size=40_000, mode="linear")),
    ("interpolate", defaults("interpolate", size=40_000, mode="nearest")),
    ("interpolate", defaults("interpolate", size=7, mode="linear")),
])
def test_resampling_holds_its_entries_not_a_dense_out_by_in_matrix(
        name: str, params: dict[str, Any]) -> None:
    x = np.random.default_rng(0).standard_normal((1, 2, 40_000))  # dense: 12.8 GB

    def forward_and_backward() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        out = OPS[name].numpy([x], params)
        grad = OPS[name].vjp(np.ones_like(out), [x], out, params, [True])[0]
        magnitude = OPS[name].vjp_magnitude(np.ones_like(out), [x], out, params, [True])[0]
        return out, grad, magnitude

    (out, grad, magnitude), peak = peak_of(forward_and_backward)
    assert grad is not None and grad.shape == x.shape
    # Each output is a weighted mean of its inputs: the VJP of ones spreads the weights back.
    assert np.isclose(grad.sum(), out.shape[-1] * 2)
    assert np.allclose(magnitude, grad)
    assert peak < 64 * MiB


def test_bicubic_interpolation_past_a_dense_matrixs_memory_keeps_the_constant() -> None:
    x = np.ones((1, 1, 3, 30_000))
    params = defaults("interpolate", size=(5, 30_000), mode="bicubic")
    out, peak = peak_of(lambda: OPS["interpolate"].numpy([x], params))
    assert out.shape == (1, 1, 5, 30_000) and np.allclose(out, 1.0)
    assert peak < 64 * MiB


def test_logcumsumexps_complex_step_holds_blocks_not_an_n_by_n_matrix() -> None:
    n = 10_000  # an n x n matrix of weights: 800 MB
    rng = np.random.default_rng(1)
    a = rng.standard_normal(n) + 1j * 1e-20 * rng.standard_normal(n)
    out, peak = peak_of(lambda: OPS["logcumsumexp"].numpy([a], {"dim": 0}))
    assert peak < 160 * MiB  # a few copies of one block's 2^22 weights
    # The step's part is the derivative along it: the softmax of the prefix times t.
    j = n - 1
    weights = np.exp(a.real[: j + 1] - out.real[j])
    assert np.isclose(out.imag[j], weights @ a.imag[: j + 1], rtol=1e-9, atol=0)


# --- einsum of three or more operands: run in the pairs its shape rule priced ---------------
#
# torch.einsum of three or more operands contracts left to right (without opt_einsum): a
# [N,1], b [1,N], c [N,1] in "ij,jk,kl->il" made an N x N b·a (1.66 GB peak at N = 5,000)
# where numpy's greedy order, the one priced, takes b·c first (one element).

LEFT_TO_RIGHT = "ij,jk,kl->il"


def chain(n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.standard_normal(shape) for shape in ((n, 1), (1, n), (n, 1))]


def counting(monkeypatch: pytest.MonkeyPatch, module: Any) -> list[tuple[int, int]]:
    """``module.einsum`` patched to note (operands, elements of the result) of each call."""
    calls: list[tuple[int, int]] = []
    einsum = module.einsum

    def counted(equation: str, *operands: Any, **kwargs: Any) -> Any:
        result = einsum(equation, *operands, **kwargs)
        calls.append((len(operands), int(np.prod(result.shape))))
        return result

    monkeypatch.setattr(module, "einsum", counted)
    return calls


def test_the_torch_form_of_einsum_contracts_in_the_priced_pairs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    torch = pytest.importorskip("torch")
    n = 3000
    arrays = chain(n)
    calls = counting(monkeypatch, torch)
    out = OPS["einsum"].torch([torch.from_numpy(x) for x in arrays],
                              {"equation": LEFT_TO_RIGHT})
    assert calls and all(operands <= 2 for operands, _ in calls)
    assert max(size for _, size in calls) <= n  # left to right: an n x n = 9·10^6 b·a
    a, b, c = arrays
    np.testing.assert_allclose(out.numpy(), a @ (b @ c), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(out.numpy(), OPS["einsum"].numpy(arrays,
                                                                {"equation": LEFT_TO_RIGHT}),
                               rtol=1e-12, atol=1e-12)


def test_the_einsum_vjp_contracts_in_pairs_within_the_operands_memory(
        monkeypatch: pytest.MonkeyPatch) -> None:
    n = 3000
    arrays = chain(n)
    params = {"equation": LEFT_TO_RIGHT}
    out = OPS["einsum"].numpy(arrays, params)
    g = np.random.default_rng(1).standard_normal(out.shape)
    calls = counting(monkeypatch, np)
    grads, peak = peak_of(lambda: OPS["einsum"].vjp(g, arrays, out, params, [True] * 3))
    assert calls and all(operands <= 2 for operands, _ in calls)
    assert max(size for _, size in calls) <= n  # "il,jk,kl->ij" left to right: n x n
    assert peak < 2 * MiB  # an n x n intermediate is 72 MB
    a, b, c = arrays
    np.testing.assert_allclose(grads[0], g @ (b @ c).T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads[1], a.T @ g @ c.T, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(grads[2], (a @ b).T @ g, rtol=1e-12, atol=1e-12)


def test_an_einsum_whose_gradient_costs_past_the_limit_is_refused_by_its_shape_rule() -> None:
    # Forward: bce·c first (b·e elements), then the product onto abde, 2·10^8 operations. The
    # gradient of the third operand, abde,bce,c->dea, in numpy's greedy order takes abde·bce
    # first: 2·10^10.
    sizes = {"a": 1000, "b": 100, "c": 100, "d": 10, "e": 100}
    args = [real(*(sizes[c] for c in spec)) for spec in ("bce", "c", "dea")]

    def refuse() -> str:
        with pytest.raises(SpecError) as refused:
            OPS["einsum"].shape(args, {"equation": "bce,c,dea->abde"})
        return str(refused.value)

    message, peak = peak_of(refuse)
    assert message.startswith("einsum(): the gradient of operand 3 (abde,bce,c->dea) would "
                              "take about 2e+10 operations in one call (limit 1e+10)")
    assert peak < 10 * MiB
    small = [real(*(min(sizes[c], 10) for c in spec)) for spec in ("bce", "c", "dea")]
    assert OPS["einsum"].shape(small, {"equation": "bce,c,dea->abde"}) == (10, 10, 10, 10)
