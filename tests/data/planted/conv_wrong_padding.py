"""PLANTED BUG (wrong padding): the gradient of the padded input is cropped from its corner instead of
from (padding, padding), so every pixel's gradient comes from its neighbour.

Otherwise a copy of cases/custom_conv.py: a hand-written 2-d convolution as a
torch.autograd.Function through im2col; conv_wrong_padding.yaml checks it against the spec conv2d.
"""

import torch
from torch.nn import functional


def im2col(padded, kernel, stride):
    """(N, C, H, W) -> (N·oH·oW, C·kH·kW): one row per output position, and (oH, oW)."""
    windows = padded.unfold(2, kernel[0], stride).unfold(3, kernel[1], stride)
    n, c, rows, cols, kh, kw = windows.shape
    return windows.permute(0, 2, 3, 1, 4, 5).reshape(n * rows * cols, c * kh * kw), (rows, cols)


class Conv2d(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, stride, padding):
        padded = functional.pad(x, (padding,) * 4)
        columns, (rows, cols) = im2col(padded, weight.shape[2:], stride)
        out = columns @ weight.flatten(1).T + bias  # (N·oH·oW, O)
        ctx.save_for_backward(padded, weight)
        ctx.settings = (stride, padding)
        return out.reshape(x.shape[0], rows, cols, -1).permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad_output):
        padded, weight = ctx.saved_tensors
        stride, padding = ctx.settings
        kernel = weight.shape[2:]
        columns, (rows, cols) = im2col(padded, kernel, stride)
        grad = grad_output.permute(0, 2, 3, 1)  # (N, oH, oW, O)
        grad_weight = (grad.reshape(-1, weight.shape[0]).T @ columns).view_as(weight)
        # Each output position spreads its gradient, times the kernel, back over its window.
        grad_padded = torch.zeros_like(padded)
        for i in range(kernel[0]):
            for j in range(kernel[1]):
                grad_padded[:, :, i:i + stride * (rows - 1) + 1:stride,
                            j:j + stride * (cols - 1) + 1:stride] += (
                                grad @ weight[:, :, i, j]).permute(0, 3, 1, 2)
        height, width = padded.shape[2] - 2 * padding, padded.shape[3] - 2 * padding
        grad_x = grad_padded[:, :, :height, :width]  # BUG: cropped at 0, not at padding
        grad_bias = grad_output.sum(dim=(0, 2, 3))  # summed over the batch and every position
        return grad_x, grad_weight, grad_bias, None, None


def layer(x, W, b):
    """The layer alone (padding 1): a tensor output, checked through random cotangents."""
    return Conv2d.apply(x, W, b, 1, 1)


def loss(x, W, b):
    """The layer at stride 2, padding 1, feeding further computation down to a scalar loss."""
    return torch.tanh(Conv2d.apply(x, W, b, 2, 1)).pow(2).mean()
