"""A test suite written for torch.autograd.gradcheck. tests/test_dropin.py runs it unchanged,
and with the import below swapped for gradcheck_lab's."""

import torch
from functions import BilinearPair, ScaledTanh, SmoothAbs, WeightedSquare
from torch.autograd import gradcheck, gradgradcheck


def double(*shape, grad=True, seed=0):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, dtype=torch.float64, generator=generator, requires_grad=grad)


def test_scaled_tanh_with_a_python_scale():
    assert gradcheck(ScaledTanh.apply, (double(4, 3), 2.5), eps=1e-6, atol=1e-4)


def test_bilinear_pair_returns_two_outputs():
    inputs = (double(3, 4), double(4, 2, seed=1), double(3, 4, seed=2))
    assert gradcheck(BilinearPair.apply, inputs)


def test_weighted_square_with_a_weight_that_needs_no_grad():
    assert gradcheck(WeightedSquare.apply, (double(5), double(5, grad=False, seed=1)))


def test_smooth_abs_at_second_order():
    assert gradgradcheck(SmoothAbs.apply, (double(4),))
