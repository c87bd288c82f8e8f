"""The library's own tests: they call every Function, gradcheck only one."""

import torch
from sparklib.ops import Cube, LogSumExp, ScaledProductAndSum, SoftsignLayer, Spike


def test_scaled_product_and_sum_values():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = torch.tensor([3.0, -1.0], requires_grad=True)
    product, total = ScaledProductAndSum.apply(x, y, 0.5)
    assert torch.allclose(product, torch.tensor([1.5, -1.0]))
    assert torch.allclose(total, torch.tensor([4.0, 1.0]))


def test_logsumexp_is_gradchecked():
    x = torch.randn(3, 4, dtype=torch.float64, requires_grad=True,
                    generator=torch.Generator().manual_seed(0))
    assert torch.autograd.gradcheck(lambda t: LogSumExp.apply(t, 1), (x,))


def test_a_layer_trains_one_step():
    torch.manual_seed(0)
    layer = SoftsignLayer(3)
    x = torch.randn(5, 3)
    loss = layer(x).pow(2).sum()
    loss.backward()
    assert layer.linear.weight.grad is not None


def test_spike_counts():
    membrane = torch.tensor([-0.5, 0.2, 1.5], requires_grad=True)
    assert Spike.apply(membrane).sum().item() == 2.0


def test_cube_value():
    x = torch.tensor([2.0, -1.0], requires_grad=True)
    out = Cube.apply(x)
    assert out.tolist() == [8.0, -1.0]
    out.sum().backward()  # the gradient is used, never checked
    assert x.grad is not None


def test_smooth_abs_and_gate():
    from sparklib.ops import Gate, smooth_abs

    x = torch.tensor([-2.0, 0.5], dtype=torch.float64, requires_grad=True)
    assert smooth_abs(x).min().item() > 0
    gate = Gate(2).double()
    assert gate(x).shape == (2,)
