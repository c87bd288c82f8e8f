"""Every elementwise op and activation as a case of its own: loaded from its spelling, checked
by all three oracles at float64 and float32, and passing; the same functions at realistic
sizes under the rule sweep. (tests/test_ops.py confirms each rule against elementwise sympy
and torch; this is the user's view: a case that names the op.)"""

from __future__ import annotations

import re
from typing import Any

import pytest

from gradcheck_lab import check
from gradcheck_lab.ops import OPS
from gradcheck_lab.oracles import symbolic

SEED = 7
DTYPES = ["float64", "float32"]


def uniform(shape: list[int], low: float, high: float, seed: int = SEED) -> dict[str, Any]:
    return {"shape": shape, "init": "uniform", "low": low, "high": high, "seed": seed}


def assert_all_three_agree(results: list[Any]) -> None:
    assert [r.dtype for r in results] == DTYPES
    for result in results:
        assert result.status == "pass", (result.dtype, result.message)
        counts = result.counts
        # Both comparisons happened on every gradient element of every probe, not a skip or
        # a subset.
        # (A scalar output's second probe checks the scaling only, and is not counted.)
        scalar = result.tolerance["probes"].startswith("scalar output")
        compared = (1 if scalar else counts["probes"]) * counts["gradient_elements"]
        assert counts["symbolic_vs_autograd"] == compared > 0, counts
        assert counts["finite_difference"] == compared, counts


def assert_refused(spelled: str, inputs: dict[str, Any], message: str) -> None:
    """Loading the case fails with one line that says ``message``."""
    from gradcheck_lab.errors import CaseError

    with pytest.raises(CaseError) as caught:
        check(spelled, inputs)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def real_functions(arity: int) -> list[str]:
    """Elementwise functions of ``arity`` real arguments that have a derivative."""
    return sorted(name for name, op in OPS.items()
                  if op.is_elementwise and op.callable and op.returns != "bool"
                  and not op.bool_args and op.min_args == op.max_args == arity)


UNARY = real_functions(1)


@pytest.mark.slow
@pytest.mark.parametrize("name", UNARY)
def test_each_unary_function_passes_at_float64_and_float32(name: str) -> None:
    low, high = OPS[name].smooth_range
    results = check(f"{name}(x)", {"x": uniform([3, 4], low, high)}, name=name, dtypes=DTYPES)
    assert_all_three_agree(results)


# Arguments of the binary functions: b clear of 0 where the function divides by it.
BINARY_INPUTS = {
    "atan2": ((-2.0, 2.0), (-2.0, 2.0)),
    "hypot": ((-2.0, 2.0), (-2.0, 2.0)),
    "remainder": ((-5.0, 5.0), (0.5, 2.0)),
    "fmod": ((-5.0, 5.0), (-2.0, -0.5)),
    "maximum": ((-2.0, 2.0), (-2.0, 2.0)),
    "minimum": ((-2.0, 2.0), (-2.0, 2.0)),
}


def test_every_binary_function_has_a_case() -> None:
    assert set(real_functions(2)) == set(BINARY_INPUTS)


@pytest.mark.parametrize("name", sorted(BINARY_INPUTS))
def test_each_binary_function_passes_broadcasting_at_float64_and_float32(name: str) -> None:
    (a_low, a_high), (b_low, b_high) = BINARY_INPUTS[name]
    results = check(f"{name}(a, b)", {"a": uniform([3, 4], a_low, a_high),
                                      "b": uniform([4], b_low, b_high, seed=SEED + 1)},
                    name=name, dtypes=DTYPES)
    assert_all_three_agree(results)


@pytest.mark.parametrize("spelled", [
    "softplus(x, beta=2.5)",
    "softplus(x, 0.5, 1.0)",  # torch's positional order: beta, threshold
    "gelu(x, approximate='tanh')",
    "elu(x, alpha=0.5)",
    "celu(x, alpha=2.0)",
    "leaky_relu(x, negative_slope=0.2)",
    "leaky_relu(x, 0.2)",
    "hardtanh(x, min_val=-0.5, max_val=1.5)",
])
def test_activations_with_keywords_pass(spelled: str) -> None:
    results = check(spelled, {"x": uniform([3, 4], -3.0, 3.0)}, dtypes=DTYPES)
    assert_all_three_agree(results)


@pytest.mark.parametrize("text, message", [
    ("softplus(x, beta=0)", "beta= must not be 0"),
    ("celu(x, alpha=0.0)", "alpha= must not be 0"),
    ("hardtanh(x, min_val=2.0, max_val=1.0)", "min_val= must not exceed max_val="),
    ("gelu(x, approximate='fast')", "approximate"),
    ("leaky_relu(x, slope=0.2)", "negative_slope"),
])
def test_bad_keywords_are_refused_at_load(text: str, message: str) -> None:
    from gradcheck_lab.errors import CaseError

    with pytest.raises(CaseError, match=message):
        check(text, {"x": [0.5, 1.0]})


@pytest.mark.parametrize("spelled", [
    "where(x > 0, x, 0.1 * x)",                       # leaky relu by hand
    "where((x > -1) & (x < 1), x ** 3, sign(x))",
    "where(~(x >= 0.5) | (y < 0), x * y, 2 * x)",     # broadcasting a [4] condition
    "x * (x > 0.2) + (x <= 0.2) * exp(x)",            # conditions promote to 0 and 1
    "clamp(x, min=-0.5)",
    "clamp(x, max=0.7)",
    "clamp(x, -0.5, 0.7)",
    "clamp(x, min=y, max=1.5)",                        # a tensor bound, broadcast
    "clamp(x, max=y)",
    "x % 0.75 + remainder(x, -1.25)",
    "sin(pi * x) + e ** x",
    "where(t == 1, x, 2 * x) * (t + 1)",              # integer tensors compare and promote
    "where((x > 0) ^ (y != 0.5), -x / (y + 3), x)",   # xor, !=, negation, division
])
@pytest.mark.slow
def test_conditions_and_selection_pass(spelled: str) -> None:
    inputs = {"x": uniform([3, 4], -2.0, 2.0), "y": uniform([4], -1.0, 1.0, seed=SEED + 1),
              "t": {"shape": [4], "init": "randint", "high": 3, "seed": SEED}}
    results = check(spelled, inputs, dtypes=DTYPES)
    assert_all_three_agree(results)


def test_a_condition_on_its_tie_is_a_kink_as_relu_at_0() -> None:
    (result,) = check("sum(where(x > 0.5, x, 0.0))", {"x": [0.25, 0.5, 1.0]})
    assert result.status == "skip"
    assert "x[1]" in result.message and "the condition a > b flips" in result.message


def test_clamp_with_min_above_max_gives_max_and_its_gradient() -> None:
    (result,) = check("sum(clamp(x, lo, hi))", {"x": [0.5, 2.0, -1.0], "lo": [1.0, 1.0, 1.0],
                                               "hi": [0.0, 0.0, 0.0]},
                      expect={"value": "sum(hi)", "grad": {"x": "0 * x", "lo": "0 * lo",
                                                           "hi": "1 + 0 * hi"}})
    assert result.status == "pass", result.message


ACTIVATIONS = sorted(name for name, op in OPS.items() if op.group == "activation")


@pytest.mark.slow
def test_activations_at_mnist_like_sizes_pass_under_the_rule_sweep() -> None:
    """Batch 64, 128 features: every activation of a hidden layer, summed to a loss."""
    terms = " + ".join(f"{name}(h)" for name in ACTIVATIONS)
    # h[55, 103] = -0.99999999702 is -1 in float32, on hardtanh's kink: avoid_kinks moves
    # the point off it (a skip otherwise, as relu's kink is).
    results = check(f"mean({terms})", {"h": uniform([64, 128], -4.0, 4.0)},
                    symbolic="sweep", dtypes=DTYPES, avoid_kinks=True)
    for result in results:
        assert result.status == "pass", (result.dtype, result.message)
        assert result.oracles["symbolic"].startswith("rule sweep"), result.oracles
        assert result.counts["symbolic_vs_autograd"] == 64 * 128  # a scalar: one probe counted


@pytest.mark.parametrize("spelled", [
    "prod(x, dim=1)",
    "prod(x)",
    "amax(x, dim=(0, 1))",
    "amin(x, dim=0, keepdim=True) * x",
    "max(x, dim=1)",
    "min(x)",
    "max(x, 0, True) - min(x, dim=0)",
    "var(x, dim=1)",
    "std(x, dim=0, correction=0)",
    "var(x)",
    "vector_norm(x, dim=1)",
    "vector_norm(x, ord=3.0)",
    "norm(x, p=1.0, dim=0)",
    "cumsum(x, dim=1)",
    "cumprod(x, dim=0)",
    "logcumsumexp(x, dim=-1)",
])
@pytest.mark.slow
def test_each_reduction_and_scan_passes_at_float64_and_float32(spelled: str) -> None:
    results = check(spelled, {"x": uniform([4, 6], 0.5, 1.5)}, dtypes=DTYPES)
    assert_all_three_agree(results)


def test_reductions_at_realistic_sizes_pass_under_the_rule_sweep() -> None:
    """Batch 32, 256 features: the statistics of a layer, summed to a loss."""
    loss = ("mean(std(h, dim=1) + vector_norm(h, dim=1) + amax(h, dim=1) - min(h, dim=1) "
            "+ logsumexp(h, dim=1)) + mean(cumsum(h, dim=1)) + mean(var(h, dim=0))")
    results = check(loss, {"h": uniform([32, 256], -2.0, 2.0)}, symbolic="sweep",
                    dtypes=DTYPES)
    for result in results:
        assert result.status == "pass", (result.dtype, result.message)
        assert result.counts["symbolic_vs_autograd"] == 32 * 256


@pytest.mark.parametrize("spelled", [
    "softmin(x, dim=1)",
    "glu(x)",
    "glu(x, dim=0)",
    "log_softmax(x, dim=0) * softmax(x, dim=1)",
])
def test_softmax_kin_pass_at_float64_and_float32(spelled: str) -> None:
    results = check(spelled, {"x": uniform([4, 6], -2.0, 2.0)}, dtypes=DTYPES)
    assert_all_three_agree(results)


STRUCTURE_INPUTS = {
    "x": uniform([4, 6], -2.0, 2.0),
    "w": uniform([6, 3], -2.0, 2.0, seed=SEED + 1),
    "v": uniform([6], -2.0, 2.0, seed=SEED + 2),
    "t": {"value": [3, 0, 1], "dtype": "int64"},
    "g": {"value": [[0, 5], [2, 2], [4, 1]], "dtype": "int64"},
}


@pytest.mark.parametrize("spelled", [
    "x[1:3, ::2]", "x[..., -1] * x[:, 0]", "x[None, 1:]", "narrow(x, 1, 2, 3)",
    "flip(x, (0, 1)) * x", "roll(x, (1, -2), (0, 1)) * x", "cat([x, 2 * x], dim=0)",
    "stack([x, x * x], dim=1)", "split(x, 4, dim=1)[1]", "split(x, (1, 2, 3), 1)[2]",
    "chunk(x, 3, dim=0)[-1]", "squeeze(unsqueeze(x, 0), 0)", "expand(x[:, :1], (4, 6))",
    "broadcast_to(v, (2, 6)) * 1.5", "permute(unsqueeze(x, 2), (2, 1, 0))",
    "movedim(unsqueeze(x, 0), 0, -1)", "tile(x, (2, 1))", "repeat_interleave(x, 2, dim=1)",
    "diagonal(x, 1)", "tril(x) + triu(x, 1) ** 2", "index_select(x, 0, t)",
    "gather(x, 1, g)", "embedding(t, x)", "pad(x, (1, 2, 0, 1), value=0.5)",
    "pad(unsqueeze(x, 0), (2, 3), mode='reflect')",
    "pad(unsqueeze(x, 0), (1, 1, 2, 0), 'replicate')",
    "pad(unsqueeze(x, 0), (4, 1), mode='circular')", "one_hot(t, 6) * x[:3]",
    "einsum('ij,jk->ik', x, w)", "einsum('ij,j', x, v)", "dot(v, v * v)",
    "outer(v, v[:4])", "bmm(stack([x, x]), stack([w, w]))", "trace(x[:, :4])",
    "matmul(stack([x, x]), w)",
    "select(x, 0, -1) * sum(x, dim=0) + mean(x, (0, 1))", "flatten(stack([x, x]), 1)",
    "reshape(transpose(x, 0, 1), (3, -1))", "logsumexp(x, dim=1)",
    "linear(x, transpose(w, 0, 1), v[:3])", "layer_norm(x, (6,), v, v * v)",
])
@pytest.mark.slow
def test_each_structure_op_passes_at_float64_and_float32(spelled: str) -> None:
    results = check(spelled, STRUCTURE_INPUTS, dtypes=DTYPES)
    assert_all_three_agree(results)


@pytest.mark.parametrize("spelled, message", [
    ("narrow(x, 1, 4, 3)", "do not fit a dim of size 6"),
    ("permute(x, (0, 0))", "is not an order of the 2 dims"),
    ("cat([x, w], dim=0)", "cat()"),
    ("cat(x, x)", "takes a list of tensors"),
    ("split(x, 2)", "pick one with [k]"),
    ("split(x, 2, dim=1)[3]", "gives 3 pieces"),
    ("x[::-1]", "slice step must be positive"),
    ("x[t]", "constant integers"),
    ("x[0, 0, 0]", "getitem()"),
    ("einsum('ij,jk->ik', x, x)", "index 'j' has sizes 6 and 4"),
    ("einsum('ii->i', w[:3])", "repeats an index"),
    ("einsum('...i->i', x)", "not supported"),
    ("glu(x[:, :5])", "must be even"),
    ("one_hot(t)", "needs num_classes="),
    ("pad(x, (-1, 1))", "negative padding"),
    ("pad(v, (1, 1), mode='reflect')", "pads at most 0 of a 1-d input's dims"),
    ("pad(x, (6, 1), mode='reflect')", "smaller than the padded dim"),
    ("var(x[0, :1])", "N - correction <= 0"),
    ("max(x, dim=(0, 1))", "takes one dim"),
])
def test_bad_structure_is_refused_with_a_one_line_reason(spelled: str, message: str) -> None:
    assert_refused(spelled, STRUCTURE_INPUTS, message)


@pytest.mark.slow
def test_structure_at_realistic_sizes_passes_under_the_rule_sweep() -> None:
    """Batch 32, 128 features: slicing, joining, padding, gathering and contracting a layer."""
    inputs = {"h": uniform([32, 128], -2.0, 2.0),
              "idx": {"shape": [32, 4], "init": "randint", "low": 0, "high": 128, "seed": 3,
                      "dtype": "int64"}}
    loss = ("mean(cat([h[:, :64], flip(h[:, 64:], (1,))], dim=0) ** 2) "
            "+ mean(pad(unsqueeze(h, 0), (2, 2), mode='reflect') ** 2) + sum(gather(h, 1, idx)) "
            "+ mean(einsum('bi,bj->ij', h[:, :16], h[:, 16:32])) + mean(roll(h, 3, 1) * h) "
            "+ mean(stack([chunk(h, 4, dim=1)[1], chunk(h, 4, 1)[2]]) * tril(h[:, :32]))")
    results = check(loss, inputs, symbolic="sweep", dtypes=DTYPES)
    for result in results:
        assert result.status == "pass", (result.dtype, result.message)
        assert result.counts["symbolic_vs_autograd"] == 32 * 128


def test_an_index_out_of_range_is_an_error_at_the_key_not_a_crash() -> None:
    (result,) = check("gather(x, 1, h)", {**STRUCTURE_INPUTS,
                                          "h": {"value": [[0, 6]], "dtype": "int64"}})
    assert result.status == "error"
    assert "index 6 is out of range for a dim of size 6" in result.message
    assert "internal error" not in result.message


# Matrix functions: a well-conditioned a (cond 3), a + aᵀ with eigenvalues 1.9, 4.5, 5.6 and
# x with singular values 1.7, 1.2, 1.0, so that float32's rounding stays far below its
# tolerance, and every symmetric argument is spelled symmetric (torch reads one triangle).
MATRIX_INPUTS = {
    "a": [[2.0, 0.5, -0.3], [0.4, 1.5, 0.6], [-0.2, 0.7, 2.5]],
    "x": [[1.0, -0.5, 0.3], [0.2, 1.2, -0.7], [0.8, 0.1, 0.9], [-0.4, 0.6, 0.5]],
    "b": [[0.5, -1.0], [1.5, 0.2], [-0.3, 0.8]],
}


def matrix_inputs(spelled: str) -> dict[str, Any]:
    return {name: value for name, value in MATRIX_INPUTS.items()
            if re.search(rf"\b{name}\b", spelled)}


@pytest.mark.parametrize("spelled", [
    "inv(a)", "inv(stack([a, a @ a]))", "solve(a, b)", "solve(a, b[:, 0])",
    "solve(a, transpose(b, 0, 1), left=False)", "det(a)", "det(x[:2, :2]) * det(a)",
    "slogdet(a)[1]", "slogdet(a)[0] * x[:3]", "cholesky(a @ transpose(a, 0, 1))",
    "cholesky(a @ transpose(a, 0, 1) + 1, upper=True)", "qr(x)[0]", "qr(x)[1]",
    "qr(transpose(x, 0, 1))[0]", "qr(transpose(x, 0, 1), mode='complete')[1]",
    "eigh(a + transpose(a, 0, 1))[0]", "eigh(a + transpose(a, 0, 1))[1]",
    "eigvalsh(a + transpose(a, 0, 1), UPLO='U')", "svd(x, full_matrices=False)[0]",
    "svd(x)[1]", "svd(x, full_matrices=False)[2]", "svd(a)[0]", "svdvals(transpose(x, 0, 1))",
    "matrix_exp(a)", "matrix_exp(stack([a, -a]))",
])
@pytest.mark.slow
def test_each_matrix_function_passes_at_float64_and_float32(spelled: str) -> None:
    results = check(spelled, matrix_inputs(spelled), dtypes=DTYPES)
    assert_all_three_agree(results)


@pytest.mark.parametrize("spelled, message", [
    ("eigh(a)", "eigh() gives several tensors: pick one with [k]"),
    ("svd(x)[0]", "svd(): full_matrices=True of a 4 x 3 matrix"),
    ("qr(x, mode='r')[1]", "qr(): mode='r' computes no Q"),
    ("solve(x, b)", "solve(): A must be square"),
    ("inv(a[0])", "inv(): A must be a matrix (..., m, n), got shape [3]"),
])
def test_bad_matrix_arguments_are_refused_with_a_one_line_reason(spelled: str,
                                                                  message: str) -> None:
    assert_refused(spelled, matrix_inputs(spelled), message)


def test_a_singular_or_indefinite_matrix_is_an_error_at_the_key_not_a_crash() -> None:
    for spelled, message in [("inv(a - a)", "A is singular"),
                             ("cholesky(a - transpose(a, 0, 1))", "not positive definite")]:
        (result,) = check(spelled, matrix_inputs(spelled))
        assert result.status == "error", result.message
        assert message in result.message
        assert "internal error" not in result.message


@pytest.mark.parametrize("order", [1, 2])
def test_pow_with_a_tensor_exponent_passes_at_both_orders(order: int) -> None:
    inputs = {"x": uniform([3], 0.5, 2.0), "y": [2.0, -0.5, 1.5]}
    # Within the exact oracle's reach: screened by the sweep, and exact when asked for.
    for mode, method in (("auto", symbolic.METHOD_SCREEN), ("exact", symbolic.METHOD_EXACT)):
        for result in check("sum(x ** y * x)", inputs, order=order, dtypes=DTYPES,
                            symbolic=mode):
            assert result.status == "pass", result.message
            assert result.oracles["symbolic"] == method


LOSS_INPUTS = {
    "p": uniform([4, 5], -2.0, 2.0),  # predictions / logits
    "y": uniform([4, 5], -2.0, 2.0, seed=SEED + 1),  # regression targets
    "q": uniform([4, 5], 0.05, 0.95, seed=SEED + 2),  # probabilities
    "z": uniform([4, 5], 0.0, 1.0, seed=SEED + 3),  # soft targets in [0, 1]
    "a": uniform([4, 6], -1.0, 1.0, seed=SEED + 4),
    "b": uniform([4, 6], -1.0, 1.0, seed=SEED + 5),
    "c": uniform([4, 6], -1.0, 1.0, seed=SEED + 6),
    "s": uniform([4], -1.0, 1.0, seed=SEED + 7),
    "r": {"value": [1.0, -1.0, -1.0, 1.0]},  # ranking targets
    "w": {"value": [0.5, 1.0, 2.0, 1.0, 0.25]},
    # Class weights: torch takes no gradient for them, and the language refuses one.
    "cw": {"value": [0.5, 1.0, 2.0, 1.0, 0.25], "requires_grad": False},
    "label": {"value": [3, 0, 4, 1], "dtype": "int64"},
    "ignored": {"value": [3, -100, 4, 1], "dtype": "int64"},
}


@pytest.mark.parametrize("spelled", [
    "mse_loss(p, y)", "mse_loss(p, y, reduction='sum')", "mse_loss(p, y, reduction='none')",
    "l1_loss(p, y)", "smooth_l1_loss(p, y, beta=0.5)", "huber_loss(p, y, reduction='sum')",
    "binary_cross_entropy(q, z)", "binary_cross_entropy(q, z, w)",
    "binary_cross_entropy_with_logits(p, z)",
    "binary_cross_entropy_with_logits(p, z, pos_weight=w)",
    "kl_div(log_softmax(p, dim=1), softmax(y, dim=1), reduction='batchmean')",
    "kl_div(log_softmax(p, dim=1), log_softmax(y, dim=1), reduction='sum', log_target=True)",
    "poisson_nll_loss(p, q)", "poisson_nll_loss(q, z, log_input=False, full=True)",
    "margin_ranking_loss(a[:, 0], b[:, 0], r, margin=0.1)",
    "pairwise_distance(a, b)", "cosine_similarity(a, b, dim=1)",
    "triplet_margin_loss(a, b, c, margin=2.0)", "triplet_margin_loss(a, b, c, swap=True)",
    "cross_entropy(p, label)", "cross_entropy(p, label, cw)",
    "cross_entropy(p, ignored, reduction='sum')", "cross_entropy(p, label, label_smoothing=0.1)",
    "cross_entropy(p, softmax(y, dim=1))", "cross_entropy(p, label, reduction='none') * s",
    "nll_loss(log_softmax(p, dim=1), label, weight=cw)",
    "nll_loss(log_softmax(p, dim=1), ignored, ignore_index=-100, reduction='mean')",
])
@pytest.mark.slow
def test_each_loss_passes_at_float64_and_float32(spelled: str) -> None:
    results = check(spelled, LOSS_INPUTS, dtypes=DTYPES)
    assert_all_three_agree(results)


@pytest.mark.parametrize("spelled, message", [
    ("mse_loss(p, y, reduction='avg')", "reduction"),
    ("cross_entropy(p, label, w)", "takes no gradient for its weight"),
    ("kl_div(p, y, reduction='batch')", "reduction"),
])
def test_bad_loss_arguments_are_refused_with_a_one_line_reason(spelled: str,
                                                              message: str) -> None:
    assert_refused(spelled, LOSS_INPUTS, message)


@pytest.mark.slow
def test_losses_at_mnist_size_pass_under_the_rule_sweep() -> None:
    """Batch 64, 10 classes: the losses a classifier or a regressor ends in, summed."""
    inputs = {"logits": uniform([64, 10], -3.0, 3.0),
              "soft": uniform([64, 10], 0.0, 1.0, seed=SEED + 1),
              "label": {"shape": [64], "init": "randint", "low": 0, "high": 10, "seed": 3,
                        "dtype": "int64"}}
    loss = ("cross_entropy(logits, label, label_smoothing=0.1) "
            "+ binary_cross_entropy_with_logits(logits, soft) "
            "+ smooth_l1_loss(logits, soft) + mse_loss(softmax(logits, dim=1), soft)")
    results = check(loss, inputs, symbolic="sweep", dtypes=DTYPES, avoid_kinks=True)
    for result in results:
        assert result.status == "pass", (result.dtype, result.message)
        assert result.counts["symbolic_vs_autograd"] == 2 * 64 * 10  # logits and soft


CONV_INPUTS = {
    "img": uniform([2, 4, 6, 7], -1.0, 1.0),
    "seq": uniform([2, 3, 9], -1.0, 1.0, seed=SEED + 1),
    "vol": uniform([1, 2, 4, 4, 5], -1.0, 1.0, seed=SEED + 2),
    "w2": uniform([6, 2, 3, 2], -1.0, 1.0, seed=SEED + 3),
    "w1": uniform([4, 3, 3], -1.0, 1.0, seed=SEED + 4),
    "w3": uniform([2, 2, 2, 3, 2], -1.0, 1.0, seed=SEED + 5),
    "wt": uniform([4, 3, 3, 3], -1.0, 1.0, seed=SEED + 6),
    "b6": uniform([6], -1.0, 1.0, seed=SEED + 7),
}


@pytest.mark.parametrize("spelled", [
    "conv2d(img, w2, b6, groups=2, dilation=(2, 1), padding=1)",
    "conv2d(img, w2, b6, 1, 'same', 1, 2)",  # torch's positional order
    "conv2d(img, w2, stride=(2, 1), padding='valid', groups=2)",
    "conv1d(seq, w1, stride=2, dilation=2)",
    "conv1d(seq, w1, padding='same')",
    "conv3d(vol, w3, padding=(1, 0, 1))",
    "conv_transpose2d(img, wt, stride=2, padding=1, output_padding=1)",
    "conv_transpose2d(img, wt[:, :2], groups=2, dilation=2)",
    "conv_transpose1d(seq, w1[:3], stride=2, padding=1, output_padding=1)",
    "conv_transpose3d(vol, w3, stride=(1, 2, 1))",
    "max_pool2d(img, 3, stride=2, padding=1, ceil_mode=True)",
    "max_pool2d(img, 2, dilation=2)",
    "max_pool1d(seq, 3, 2, 1)",
    "max_pool3d(vol, 2)",
    "avg_pool2d(img, 3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)",
    "avg_pool2d(img, 2, divisor_override=3)",
    "avg_pool1d(seq, 4, padding=2)",
    "avg_pool3d(vol, (2, 2, 3), ceil_mode=True)",
    "adaptive_avg_pool2d(img, (4, 3))",
    "adaptive_avg_pool1d(seq, 4)",
    "adaptive_avg_pool3d(vol, 2)",
])
@pytest.mark.slow
def test_each_conv_and_pool_passes_at_float64_and_float32(spelled: str) -> None:
    results = check(spelled, CONV_INPUTS, dtypes=DTYPES)
    assert_all_three_agree(results)


@pytest.mark.parametrize("spelled, message", [
    ("conv2d(img, w2)", "x has 4 channels but w expects 2"),
    ("conv2d(img, w2, groups=3)", "groups=3 must divide"),
    ("conv2d(img, w2, groups=2, padding='full')", "padding='full' is not one of"),
    ("conv2d(img, w2, stride=2, padding='same', groups=2)", "padding='same' needs stride=1"),
    ("conv_transpose2d(img, wt, output_padding=1)", "must be smaller than the stride"),
    ("max_pool2d(img, 2, padding=2)", "at most half"),
    ("max_pool2d(img, 2, return_indices=True)", "return_indices=True"),
])
def test_bad_conv_and_pool_settings_are_refused_with_a_one_line_reason(
        spelled: str, message: str) -> None:
    assert_refused(spelled, CONV_INPUTS, message)


@pytest.mark.slow
def test_an_mnist_cnn_with_modern_layers_passes_under_the_rule_sweep() -> None:
    """Batch 8 of 1x28x28: a padded "same" conv, a grouped dilated conv, avg and max pools
    with padding and ceil_mode, a transposed conv and global pooling, to a 10-class loss."""
    inputs = {
        "x": uniform([8, 1, 28, 28], 0.0, 1.0),
        "W1": uniform([8, 1, 3, 3], -0.5, 0.5, seed=SEED + 1),
        "W2": uniform([8, 2, 3, 3], -0.3, 0.3, seed=SEED + 2),
        "Wt": uniform([8, 4, 2, 2], -0.3, 0.3, seed=SEED + 3),
        "Wf": uniform([10, 4], -0.5, 0.5, seed=SEED + 4),
        "label": {"shape": [8], "init": "randint", "low": 0, "high": 10, "seed": 5,
                  "dtype": "int64"},
    }
    loss = ("cross_entropy(linear(flatten(adaptive_avg_pool2d(conv_transpose2d("
            "max_pool2d(silu(conv2d(avg_pool2d(tanh(conv2d(x, W1, padding='same')), 2, "
            "ceil_mode=True), W2, groups=4, dilation=2, padding=2)), 3, 2, 1, ceil_mode=True),"
            " Wt, stride=2), 1), 1), Wf), label)")
    results = check(loss, inputs, symbolic="sweep", dtypes=DTYPES, avoid_kinks=True)
    for result in results:
        assert result.status == "pass", (result.dtype, result.message)
        assert result.oracles["symbolic"].startswith("rule sweep"), result.oracles
        assert result.counts["symbolic_vs_autograd"] == 8 * 784 + 72 + 144 + 128 + 40


# --- normalization, dropout and attention (ops/normalization.py, ops/attention.py) ----------

NORM_INPUTS: dict[str, Any] = {
    "x": uniform([8, 6], -2.0, 2.0),
    "img": uniform([4, 6, 3, 3], -2.0, 2.0, seed=SEED + 1),
    "seq": uniform([3, 5, 6], -2.0, 2.0, seed=SEED + 2),
    "w": uniform([6], 0.5, 1.5, seed=SEED + 3),
    "b": uniform([6], -1.0, 1.0, seed=SEED + 4),
    "w2": uniform([5, 6], 0.5, 1.5, seed=SEED + 5),
    # Running statistics: torch takes no gradient for them, and the language refuses one.
    "rm": {"value": [0.1, -0.2, 0.3, 0.0, -0.5, 0.25], "requires_grad": False},
    "rv": {"value": [0.5, 1.5, 2.0, 1.0, 0.75, 3.0], "requires_grad": False},
    "rm_grad": {"value": [0.1, -0.2, 0.3, 0.0, -0.5, 0.25]},
    "q": uniform([2, 4, 3], -1.5, 1.5, seed=SEED + 6),
    "k": uniform([2, 5, 3], -1.5, 1.5, seed=SEED + 7),
    "v": uniform([2, 5, 2], -1.5, 1.5, seed=SEED + 8),
    "q4": uniform([2, 2, 4, 3], -1.5, 1.5, seed=SEED + 9),
    "k4": uniform([2, 2, 5, 3], -1.5, 1.5, seed=SEED + 10),
    "v4": uniform([2, 2, 5, 2], -1.5, 1.5, seed=SEED + 11),
    "m": {**uniform([4, 5], -1.0, 1.0, seed=SEED + 12), "requires_grad": False},
    "bias": uniform([4, 5], -1.0, 1.0, seed=SEED + 13),  # a real mask, differentiated
    # Row 2 keeps nothing: its weights are 0, as torch's.
    "keep": {"value": [[1, 0, 1, 1, 0], [0, 1, 0, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]],
             "requires_grad": False},
}


def norm_inputs(spelled: str) -> dict[str, Any]:
    """The inputs the expression names (each one is differentiated and counted)."""
    return {name: spec for name, spec in NORM_INPUTS.items()
            if re.search(rf"\b{name}\b", spelled)}


@pytest.mark.parametrize("spelled", [
    "batch_norm(x, training=True)",
    "batch_norm(x, weight=w, bias=b, training=True)",
    "batch_norm(img, running_mean=None, running_var=None, weight=w, training=True, "
    "momentum=0.2)",
    "batch_norm(img, rm, rv, w, b, True, 0.1, 1e-3)",  # torch's positional order
    "batch_norm(img, None, None, w, b, True)",  # None for the running stats, as torch takes
    "batch_norm(img, rm, rv)",
    "batch_norm(img, rm, rv, w, b)",
    "batch_norm(x, rm, rv, bias=b, eps=0.01)",
    "group_norm(img, 3)",
    "group_norm(img, 2, w, b)",
    "group_norm(img, 6, bias=b, eps=1e-3)",
    "group_norm(x, num_groups=3, weight=w)",
    "rms_norm(x, (6,), eps=1e-6)",
    "rms_norm(x, 6, w, 1e-5)",
    "rms_norm(seq, (5, 6), w2, eps=1e-6)",
    "rms_norm(seq, [6], eps=2.220446049250313e-16)",
    "dropout(x, p=0.0)",
    "dropout(x, 0.5, False) * 2",
    "dropout(x, training=False, inplace=True)",
    "scaled_dot_product_attention(q, k, v)",
    "scaled_dot_product_attention(q, k, v, m > 0)",
    "scaled_dot_product_attention(q, k, v, attn_mask=bias)",
    "scaled_dot_product_attention(q, k, v, is_causal=True)",
    "scaled_dot_product_attention(q, k, v, scale=0.5)",
    "scaled_dot_product_attention(q4, k4, v4, is_causal=True, scale=0.25)",
    "scaled_dot_product_attention(q4, k4, v4, keep > 0)",
    "scaled_dot_product_attention(q4[0], k, v, bias, 0.0)",  # batch dims broadcast
])
@pytest.mark.slow
def test_each_normalization_and_attention_passes_at_float64_and_float32(spelled: str) -> None:
    results = check(spelled, norm_inputs(spelled), dtypes=DTYPES)
    assert_all_three_agree(results)


@pytest.mark.parametrize("spelled, message", [
    ("dropout(x)", "dropout(): p=0.5 is random dropout, which a gradient check cannot repeat; "
                   "write p=0 or training=False"),
    ("dropout(x, p=1.5, training=False)", "dropout(): p=1.5 must be in [0, 1]"),
    ("batch_norm(None, rm, rv)", "batch_norm(): input is required, not None"),
    ("batch_norm(x)", "batch_norm(): training=False normalizes with running_mean and "
                      "running_var"),
    ("batch_norm(x, rm, training=True)", "running_mean and running_var are given both or "
                                         "neither"),
    ("batch_norm(x, rm_grad, rv)", "batch_norm() takes no gradient for its running_mean"),
    ("batch_norm(x[:1], training=True)", "needs more than 1 value per channel"),
    ("batch_norm(x, rm[:3], rv[:3])", "running_mean must have shape [6]"),
    ("group_norm(img, 4)", "group_norm(): num_groups=4 must divide the 6 channels"),
    ("rms_norm(x, (6,))", "rms_norm(): eps=None is torch.finfo(input.dtype).eps"),
    ("rms_norm(x, (5,), eps=1e-6)", "normalized_shape=[5] must be the trailing dims"),
    ("scaled_dot_product_attention(q, k, v, m > 0, is_causal=True)",
     "scaled_dot_product_attention(): attn_mask and is_causal=True are exclusive"),
    ("scaled_dot_product_attention(q, k, v, dropout_p=0.1)", "dropout_p=0.1 is random dropout"),
    ("scaled_dot_product_attention(q, k, v, enable_gqa=True)", "enable_gqa=True"),
    ("scaled_dot_product_attention(q, q, v)", "key and value need the same length S"),
    ("scaled_dot_product_attention(q, k, v, m[:3])", "must broadcast to the attention"),
])
def test_bad_normalization_and_attention_are_refused_with_a_one_line_reason(
        spelled: str, message: str) -> None:
    assert_refused(spelled, NORM_INPUTS, message)


def test_normalization_at_realistic_size_passes_under_the_rule_sweep() -> None:
    """Batch 32, 64 features: batch_norm (batch statistics, affine) and rms_norm of a hidden
    layer, against fixed targets."""
    inputs = {"h": uniform([32, 64], -2.0, 2.0), "w": uniform([64], 0.5, 1.5, seed=SEED + 1),
              "b": uniform([64], -1.0, 1.0, seed=SEED + 2),
              "target": {**uniform([32, 64], -1.0, 1.0, seed=SEED + 3), "requires_grad": False}}
    loss = ("mse_loss(batch_norm(h, weight=w, bias=b, training=True), target) "
            "+ mse_loss(rms_norm(h, (64,), w, eps=1e-6), target)")
    results = check(loss, inputs, symbolic="sweep", dtypes=DTYPES)
    for result in results:
        assert result.status == "pass", (result.dtype, result.message)
        assert result.oracles["symbolic"].startswith("rule sweep"), result.oracles
        assert result.counts["symbolic_vs_autograd"] == 32 * 64 + 64 + 64


def test_causal_attention_at_realistic_size_passes_under_the_rule_sweep() -> None:
    """Batch 4, 2 heads, 16 positions, 16 dims: causal self-attention against a target."""
    shape = [4, 2, 16, 16]
    inputs = {name: uniform(shape, -1.0, 1.0, seed=SEED + i)
              for i, name in enumerate(("q", "k", "v"))}
    inputs["target"] = {**uniform(shape, -1.0, 1.0, seed=SEED + 3), "requires_grad": False}
    loss = "mse_loss(scaled_dot_product_attention(q, k, v, is_causal=True), target)"
    results = check(loss, inputs, symbolic="sweep", dtypes=DTYPES)
    for result in results:
        assert result.status == "pass", (result.dtype, result.message)
        assert result.oracles["symbolic"].startswith("rule sweep"), result.oracles
        assert result.counts["symbolic_vs_autograd"] == 3 * 4 * 2 * 16 * 16


# Scores far apart: torch's softmax over the kept entries shifts by their max. The composite
# fills the dropped scores with the kept ones' mean, so softmax's own shift lands on a kept
# score too. A dropped score far above the kept ones (first case: no fill), or kept scores far
# below a fixed fill such as 0 (second case), would underflow every kept weight in float32.
@pytest.mark.parametrize("query, keys, keep", [
    ([[12.0, 0.0]], [[12.0, 0.0], [0.5, 0.0], [0.0, 1.0], [-0.5, 0.0]], [[0, 1, 1, 1]]),
    ([[-16.0, 0.0]], [[12.0, 0.0], [11.0, 0.0], [0.0, 0.0], [10.0, 0.0]], [[1, 1, 0, 1]]),
])
def test_attention_with_dropped_scores_far_from_the_kept_ones_passes(
        query: list[list[float]], keys: list[list[float]], keep: list[list[int]]) -> None:
    inputs = {"q": query, "k": keys,
              "v": [[1.0, 2.0], [0.5, -1.0], [-1.0, 0.25], [2.0, 1.0]],
              "keep": {"value": keep, "requires_grad": False}}
    results = check("scaled_dot_product_attention(q, k, v, keep > 0)", inputs, dtypes=DTYPES)
    assert_all_three_agree(results)


# --- indexing by tensors, scatters, view scatters, fold (ops/indexing.py) ------------------
# Index tensors are int64 data, never differentiated. Targets are distinct wherever a write
# without accumulate lands (torch leaves a write twice undefined, and the language refuses
# it); r, rep and kk repeat a target where the op sums or reduces them. m is a fixed 0/1
# pattern, spelled `m > 0` where a mask is wanted.


def int64(value: list[Any]) -> dict[str, Any]:
    return {"value": value, "dtype": "int64", "requires_grad": False}


INDEXING_INPUTS: dict[str, Any] = {
    "x": uniform([3, 4], -2.0, 2.0),
    "b": uniform([2, 3, 4], -2.0, 2.0, seed=SEED + 1),
    "v": uniform([2], -2.0, 2.0, seed=SEED + 2),
    "u": uniform([3], -2.0, 2.0, seed=SEED + 3),
    "w": uniform([2, 4], -2.0, 2.0, seed=SEED + 4),
    "s": uniform([3, 2], -2.0, 2.0, seed=SEED + 5),
    "img": uniform([1, 2, 4, 4], -2.0, 2.0, seed=SEED + 6),
    "cols": uniform([1, 8, 9], -2.0, 2.0, seed=SEED + 7),
    "i": int64([2, 0]),
    "j": int64([1, -1]),  # -1 counts from the end, as torch's advanced indexing
    "r": int64([[0], [1]]),  # broadcasts with j's [2] to [2, 2]
    "rep": int64([1, 2, 1]),  # row 1 twice
    "k": int64([[0, 3], [2, 1], [1, 0]]),  # along dim 1: distinct in each row
    "k0": int64([[1, 0, 2, 0], [2, 1, 0, 1]]),  # along dim 0: distinct in each column
    "kb": int64([[[0, 3], [2, 1], [1, 0]], [[3, 2], [0, 1], [2, 3]]]),
    "kk": int64([[0, 0], [3, 3], [1, 3]]),  # along dim 1, repeated: groups of 2 and 1
    "m": {"value": [[1, 0, 0, 1], [0, 1, 1, 0], [1, 0, 1, 0]], "requires_grad": False},
    "big": int64([0, 4]),  # 4 is out of range for x's 3 rows
}


def indexing_inputs(spelled: str) -> dict[str, Any]:
    return {name: value for name, value in INDEXING_INPUTS.items()
            if re.search(rf"\b{name}\b", spelled)}


@pytest.mark.parametrize("spelled", [
    "index(x, i)", "index(x, rep)",  # a repeated row: its gradient sums
    "index(x, None, j)", "index(x, i, j)", "index(x, 2, j)",  # a constant integer index
    "index(b, None, r, j)",  # adjacent indices broadcast in place: [2, 2, 2]
    "index(b, r, None, j)",  # indices apart: the broadcast dims go first, [2, 2, 3]
    "index_put(x, v, i, j)", "index_put(x, w, i)", "index_put(x, w[0], i)",  # values broadcast
    "index_put(b, u[:2], None, i, j)", "index_put(x, s[:, :1], rep, accumulate=True)",
    "index_put(x, v[0], m > 0)",  # x[mask] = value
    "index_put(b, v, None, m[:, 0] > 0, j)",  # a mask's positions broadcast with j
    "scatter(x, 1, k, s)", "scatter(x, 0, k0, w)",
    "scatter(x, 1, k, v[0])",  # a 0-d src: one value written at every index
    "scatter(b, -1, kb, stack([s, 2 * s]))",
    "scatter_add(x, 1, kk, s)", "scatter_add(x, 0, k0, w)",
    "scatter_add(x, 1, kk, x)",  # a src larger than the index: the index's window is read
    "scatter_reduce(x, 1, kk, s, 'sum')", "scatter_reduce(x, 1, kk, s, 'prod')",
    "scatter_reduce(x, 1, kk, s, 'mean', include_self=False)",
    "scatter_reduce(x, 1, kk, s, reduce='amax')", "scatter_reduce(x, 1, kk, s, 'amin', False)",
    "masked_scatter(x, m > 0, b)",
    "masked_scatter(x, m[0] > 0, w)",  # the mask broadcast over the rows
    "masked_scatter(x[0], m > 0, w)",  # the input broadcast to the mask
    "select_scatter(x, u, 1, -1)", "select_scatter(b, x, 0, 1)",
    "slice_scatter(x, s, 1, 1, 4, 2)", "slice_scatter(b, stack([s, 2 * s]), dim=2, start=-2)",
    "diagonal_scatter(x, u, 1)", "diagonal_scatter(b, w[:, :2], -1, 1, 2)",
    "as_strided(x, (2, 3), (3, 1), 1)",
    "as_strided(x[0], (3, 2), (1, 1))",  # overlapping: an element read twice sums
    "as_strided(b, (2, 2, 3), (12, 1, 4), 1)",  # a transposed view
    "as_strided_scatter(x, w[:, :2], (2, 2), (4, 2), 1)",
])
def test_each_indexing_and_scatter_op_passes_at_float64_and_float32(spelled: str) -> None:
    results = check(spelled, indexing_inputs(spelled), dtypes=DTYPES)
    assert_all_three_agree(results)


# Slow apart from the rest: torch's im2col, at two CPU threads, takes milliseconds a call
# (0.02 s a case at one thread, 1 to 2 s at two), and the finite differences call it hundreds
# of times.
@pytest.mark.parametrize("spelled", [
    "unfold(img, 2)", "unfold(img[0], (2, 3), padding=1, stride=(2, 1), dilation=(1, 2))",
    "fold(cols, (4, 4), 2)",  # overlapping blocks sum
    "fold(cols[0, :, :4], (3, 4), 2, stride=2, padding=(1, 0))",  # unbatched
    "fold(unfold(img, 2), (4, 4), 2)",
])
@pytest.mark.slow
def test_each_unfold_and_fold_passes_at_float64_and_float32(spelled: str) -> None:
    results = check(spelled, indexing_inputs(spelled), dtypes=DTYPES)
    assert_all_three_agree(results)


@pytest.mark.parametrize("spelled, message", [
    ("index(x, m)", "index(): i0 must be an int64 tensor (integer indices), not real"),
    ("index(x, m > 0)", "index(): a bool mask index gives a shape that depends on its values"),
    ("index(x, i, None, None, j)", "index(): the indices cover 4 dims of a 2-d input"),
    ("index_put(x, s, i)", "index_put(): values of shape [3, 2] cannot be broadcast to the "
                           "indexed shape [2, 4]"),
    ("scatter(x, 1, i, s)", "scatter(): index needs as many dims as input (2), got 1"),
    ("scatter(x, 1, m > 0, s)", "scatter(): index must be an int64 tensor, not a mask"),
    ("scatter_reduce(x, 1, kk, s, 'max')", "reduce='max' is not one of 'sum', 'prod', 'mean', "
                                           "'amax', 'amin' (did you mean 'amax'?)"),
    ("slice_scatter(x, s, 1, step=0)", "slice_scatter(): step=0 must be positive"),
    ("diagonal_scatter(x, u, dim1=1, dim2=-1)", "diagonal_scatter(): dim1 and dim2 must differ"),
    ("as_strided(x, (3, 3), (4, 1), 3)", "as_strided(): the view reaches element 13 of an "
                                         "input of 12"),
    ("as_strided_scatter(x, u, (3,), (0,))", "as_strided_scatter(): an overlapping view "
                                             "writes one element twice"),
    ("unfold(x, 2)", "unfold(): input must be (N, C, H, W) or (C, H, W), got [3, 4]"),
    ("fold(cols, (4, 5), 2)", "fold(): input's last dim (9) must be the 12 blocks that "
                              "output_size=[4, 5] has"),
])
def test_bad_indexing_and_scatter_arguments_are_refused_with_a_one_line_reason(
        spelled: str, message: str) -> None:
    assert_refused(spelled, indexing_inputs(spelled), message)


@pytest.mark.parametrize("spelled, message", [
    ("index(x, big)", "index(): index 4 is out of range for dim 0 of size 3"),
    ("scatter(x, 1, kk, s)", "scatter(): index writes one element twice"),
    ("index_put(x, s[:, :1], rep)", "index_put(): index_put without accumulate writes one "
                                    "element twice"),
    ("masked_scatter(x, m > 0, u)", "masked_scatter(): the mask selects 6 elements, but "
                                    "source has 3"),
])
def test_an_index_decided_by_its_values_is_an_error_at_the_key_not_a_crash(
        spelled: str, message: str) -> None:
    """What only the index tensors' values decide (shapes alone pass the load)."""
    results = check(spelled, indexing_inputs(spelled), dtypes=DTYPES)
    assert [r.dtype for r in results] == DTYPES
    for result in results:
        assert result.status == "error", result.message
        assert message in result.message
        assert "internal error" not in result.message


# --- order statistics (ops/sorting.py) ------------------------------------------------------
# z's values are at least 0.3 apart, so no two trade places under a finite difference (a tie
# is a kink): 6 elements, what the exact oracle affords of a sorting network. h and b (24
# elements, continuous random values that never tie) go to the rule sweep.

ORDER_INPUTS: dict[str, Any] = {
    "z": [[0.3, -1.2, 1.7], [2.1, 0.9, -0.4]],
    "h": uniform([4, 6], -2.0, 2.0, seed=SEED + 8),
    "b": INDEXING_INPUTS["b"],
}


def order_inputs(spelled: str) -> dict[str, Any]:
    return {name: value for name, value in ORDER_INPUTS.items()
            if re.search(rf"\b{name}\b", spelled)}


@pytest.mark.parametrize("spelled", [
    "sort(z)", "sort(z, dim=0, descending=True)", "sort(z, stable=True)", "sort(h, 1, True)",
    "msort(z)", "msort(b)",
    "topk(z, 2)", "topk(z, 2, dim=0, largest=False)", "topk(h, 3)",
    "topk(b, 2, dim=1, largest=False)",
    "kthvalue(z, 2)", "kthvalue(z, 3, 1, True)", "kthvalue(b, 3, dim=-1)",
    "median(z)",  # 6 elements: the lower of the middle two
    "median(z, dim=1)", "median(z, 0, keepdim=True)", "median(h, 1)",
    "cummax(z, 1)", "cummin(z, dim=0)", "cummax(h, 0) + cummin(h, -1)",
])
def test_each_order_statistic_passes_at_float64_and_float32(spelled: str) -> None:
    results = check(spelled, order_inputs(spelled), dtypes=DTYPES)
    assert_all_three_agree(results)


@pytest.mark.parametrize("spelled, message", [
    ("sort(z, dim=2)", "sort(): dim=2 is out of range for a 2-d tensor"),
    ("msort(z[0, 0])", "msort() needs at least 1 dim"),
    ("topk(z, 4)", "topk(): k=4 is out of range for a dim of size 3"),
    ("topk(z, 2, sorted=False)", "topk(): sorted=False leaves the order of the values to "
                                 "torch's kernel; use sorted=True"),
    ("kthvalue(z, 0)", "kthvalue(): k=0 is out of range for a dim of size 3"),
    ("median(z, keepdim=True)", "median(): keepdim=True needs dim="),
    ("cummax(z, -3)", "cummax(): dim=-3 is out of range"),
])
def test_bad_order_statistic_arguments_are_refused_with_a_one_line_reason(
        spelled: str, message: str) -> None:
    assert_refused(spelled, order_inputs(spelled), message)


@pytest.mark.parametrize("spelled, values, where", [
    ("sort(t)", [1.0, 0.5, 1.0], "t[0] and 1 more element(s) (sort at a tie"),
    ("topk(t, 1)", [0.5, 2.0, 2.0], "t[1] and 1 more element(s) (topk at a tie"),
    ("median(t)", [1.0, 3.0, 3.0], "t[1] and 1 more element(s) (median at a tie"),
    ("cummin(t, 0)", [2.0, 0.0, 1.0, 0.0], "t[1] and 1 more element(s) (cummin at a tie"),
])
def test_a_tie_that_decides_an_order_statistic_is_a_kink_as_max_at_a_tie(
        spelled: str, values: list[float], where: str) -> None:
    (result,) = check(spelled, {"t": values})
    assert result.status == "skip", result.message
    assert f"not differentiable at {where}" in result.message


# Resampling: image, volume and sequence inputs; grids drawn uniformly (a seeded draw never
# lands a sample exactly on a pixel, where bilinear sampling has a kink in the grid).
SAMPLING_INPUTS: dict[str, Any] = {
    "img": uniform([1, 1, 3, 4], -2.0, 2.0, seed=SEED + 9),
    "grid": uniform([1, 2, 2, 2], -0.9, 0.9, seed=SEED + 10),
    "vol": uniform([1, 1, 2, 3, 3], -2.0, 2.0, seed=SEED + 11),
    "grid3": uniform([1, 1, 2, 2, 3], -0.9, 0.9, seed=SEED + 12),
    "seq": uniform([1, 2, 4], -2.0, 2.0, seed=SEED + 13),
}


def sampling_inputs(spelled: str) -> dict[str, Any]:
    return {name: value for name, value in SAMPLING_INPUTS.items()
            if re.search(rf"\b{name}\b", spelled)}


@pytest.mark.parametrize("spelled", [
    "grid_sample(img, grid)", "grid_sample(img, grid, mode='nearest')",
    "grid_sample(img, grid, padding_mode='border', align_corners=True)",
    "grid_sample(img, 1.3 * grid, padding_mode='reflection')",  # samples outside, reflected
    "grid_sample(img, grid, mode='bicubic')", "grid_sample(vol, grid3)",
    "interpolate(img, scale_factor=2, mode='bilinear')",
    "interpolate(img, size=(5, 7), mode='bicubic', align_corners=True)",
    "interpolate(img, scale_factor=(1.5, 0.75), mode='nearest')",
    "interpolate(img, size=(6, 8), mode='nearest-exact')",
    "interpolate(seq, size=7, mode='linear')", "interpolate(vol, size=(3, 4, 5), mode='trilinear')",
])
def test_each_resampling_op_passes_at_float64_and_float32(spelled: str) -> None:
    results = check(spelled, sampling_inputs(spelled), dtypes=DTYPES)
    assert_all_three_agree(results)


def _called_ops(expr: Any) -> set[str]:
    from gradcheck_lab.program.ir import Call

    if not isinstance(expr, Call):
        return set()
    return {expr.op}.union(*(_called_ops(arg) for arg in expr.args))


def _passing_spellings() -> list[str]:
    """The expressions of this module's tests that check a case passes (argument "spelled")."""
    import sys

    found = []
    for test in vars(sys.modules[__name__]).values():
        for mark in getattr(test, "pytestmark", []):
            if mark.name == "parametrize" and mark.args[0] == "spelled":
                found += [value for value in mark.args[1] if isinstance(value, str)]
    return found


# Internal to the parser (a tuple of named outputs), never spelled in a case.
NEVER_SPELLED = {"pack"}


def test_every_op_of_the_language_has_a_passing_case_of_its_own() -> None:
    """The acceptance of the reach issue: each op loads, checks and passes at float64 and
    float32 in a case here (the unary and binary functions through their own tests)."""
    from gradcheck_lab.casefile.expr import parse_expression

    covered = set(UNARY) | set(BINARY_INPUTS) | NEVER_SPELLED
    for spelled in _passing_spellings():
        covered |= _called_ops(parse_expression(spelled))
    assert set(OPS) - covered == set()
