"""Small functions of the kinds real suites gradcheck (colour conversions, filters, losses,
geometry, layers, custom Functions), each with seeded float64 inputs the size such suites use
(a 1×3×5×5 image, a batch of 4 points). Written here from their textbook formulas; used by
``small_function_cost.py``.

``FUNCTIONS``: name -> (function, a builder of its inputs from a torch.Generator).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F  # noqa: N812 (torch's own spelling)

Inputs = tuple[torch.Tensor, ...]


def _t(generator: torch.Generator, *shape: int, low: float = -1.0, high: float = 1.0,
       grad: bool = True) -> torch.Tensor:
    x = torch.rand(*shape, dtype=torch.float64, generator=generator) * (high - low) + low
    return x.requires_grad_(grad)


def _image(generator: torch.Generator) -> Inputs:
    return (_t(generator, 1, 3, 5, 5, low=0.05, high=0.95),)


# -- colour ------------------------------------------------------------------------------------
def rgb_to_grayscale(image: torch.Tensor) -> torch.Tensor:
    r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def rgb_to_ycbcr(image: torch.Tensor) -> torch.Tensor:
    r, g, b = image[:, 0], image[:, 1], image[:, 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.stack([y, (b - y) * 0.564 + 0.5, (r - y) * 0.713 + 0.5], dim=1)


def ycbcr_to_rgb(image: torch.Tensor) -> torch.Tensor:
    y, cb, cr = image[:, 0], image[:, 1] - 0.5, image[:, 2] - 0.5
    return torch.stack([y + 1.403 * cr, y - 0.714 * cr - 0.344 * cb, y + 1.773 * cb], dim=1)


def rgb_to_xyz(image: torch.Tensor) -> torch.Tensor:
    matrix = torch.tensor([[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169],
                           [0.019334, 0.119193, 0.950227]], dtype=image.dtype)
    return torch.einsum("ij,bjhw->bihw", matrix, image)


def linear_to_srgb(image: torch.Tensor) -> torch.Tensor:
    return torch.where(image > 0.0031308, 1.055 * image.clamp(min=0.0031308) ** (1 / 2.4)
                       - 0.055, 12.92 * image)


def adjust_gamma(image: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    return image ** gamma.view(-1, 1, 1, 1)


def normalize_image(image: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor([0.485, 0.456, 0.406], dtype=image.dtype).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], dtype=image.dtype).view(1, 3, 1, 1)
    return (image - mean) / std


def adjust_saturation(image: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    gray = rgb_to_grayscale(image)
    return gray + factor.view(-1, 1, 1, 1) * (image - gray)


# -- filters -----------------------------------------------------------------------------------
def box_blur(image: torch.Tensor) -> torch.Tensor:
    kernel = torch.full((3, 1, 3, 3), 1 / 9, dtype=image.dtype)
    return F.conv2d(F.pad(image, (1, 1, 1, 1), mode="reflect"), kernel, groups=3)


def gaussian_blur(image: torch.Tensor) -> torch.Tensor:
    taps = torch.tensor([math.exp(-k * k / 2) for k in (-1, 0, 1)], dtype=image.dtype)
    taps = taps / taps.sum()
    kernel = (taps[:, None] * taps[None, :]).expand(3, 1, 3, 3)
    return F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)


def sobel_magnitude(image: torch.Tensor) -> torch.Tensor:
    gx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=image.dtype)
    kernel = torch.stack([gx, gx.t()]).unsqueeze(1).repeat(3, 1, 1, 1)
    edges = F.conv2d(F.pad(image, (1, 1, 1, 1), mode="replicate"), kernel, groups=3)
    return torch.sqrt(edges.pow(2).view(1, 3, 2, 5, 5).sum(2) + 1e-6)


def laplacian(image: torch.Tensor) -> torch.Tensor:
    kernel = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=image.dtype)
    return F.conv2d(F.pad(image, (1, 1, 1, 1), mode="reflect"),
                    kernel.expand(3, 1, 3, 3), groups=3)


def unsharp_mask(image: torch.Tensor) -> torch.Tensor:
    return image + 0.5 * (image - gaussian_blur(image))


def average_pool(image: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(image, 2, stride=1)


def bilateral_weights(image: torch.Tensor) -> torch.Tensor:
    centre = image[..., 1:-1, 1:-1]
    right = image[..., 1:-1, 2:]
    return torch.exp(-((centre - right) ** 2) / 0.1) * right


def total_variation(image: torch.Tensor) -> torch.Tensor:
    dx = image[..., :, 1:] - image[..., :, :-1]
    dy = image[..., 1:, :] - image[..., :-1, :]
    return (dx.pow(2).sum() + dy.pow(2).sum()).sqrt()


# -- losses ------------------------------------------------------------------------------------
def _pair(generator: torch.Generator) -> Inputs:
    return _t(generator, 4, 5), _t(generator, 4, 5, grad=False)


def _logits(generator: torch.Generator) -> Inputs:
    return _t(generator, 4, 5, low=-2, high=2), torch.tensor([0, 3, 1, 4])


def mse_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(x, target)


def huber_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.smooth_l1_loss(x * 3, target, beta=0.5)


def bce_with_logits(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(x, (target > 0).to(x.dtype))


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, labels)


def focal_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    probabilities = logits.softmax(-1).gather(1, labels[:, None]).squeeze(1)
    return (-(1 - probabilities) ** 2 * probabilities.log()).mean()


def kl_divergence(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.kl_div(x.log_softmax(-1), target.softmax(-1), reduction="batchmean")


def dice_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p, t = x.sigmoid(), (target > 0).to(x.dtype)
    return 1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1)


def cosine_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return (1 - F.cosine_similarity(x, target, dim=1)).mean()


def charbonnier_loss(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return torch.sqrt((x - target) ** 2 + 1e-3).mean()


# -- geometry ----------------------------------------------------------------------------------
def _points(generator: torch.Generator) -> Inputs:
    return (_t(generator, 4, 3),)


def rotation_2d(angle: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    c, s = angle.cos(), angle.sin()
    matrix = torch.stack([torch.stack([c, -s]), torch.stack([s, c])])
    return points @ matrix.t()


def homogeneous_to_euclidean(points: torch.Tensor) -> torch.Tensor:
    return points[..., :2] / (points[..., 2:] + 2.0)


def transform_points(homography: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    ones = torch.ones(points.shape[0], 1, dtype=points.dtype)
    moved = torch.cat([points, ones], dim=1) @ homography.t()
    return moved[:, :2] / (moved[:, 2:] + 3.0)


def rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    theta = axis_angle.norm(dim=-1, keepdim=True)
    k = axis_angle / theta
    zero = torch.zeros_like(k[:, 0])
    cross = torch.stack([zero, -k[:, 2], k[:, 1], k[:, 2], zero, -k[:, 0], -k[:, 1], k[:, 0],
                         zero], dim=-1).view(-1, 3, 3)
    eye = torch.eye(3, dtype=axis_angle.dtype).expand_as(cross)
    sin, cos = theta.sin()[..., None], theta.cos()[..., None]
    return eye + sin * cross + (1 - cos) * cross @ cross


def quaternion_normalize(quaternion: torch.Tensor) -> torch.Tensor:
    return quaternion / quaternion.norm(dim=-1, keepdim=True).clamp_min(1e-12)


def pairwise_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cdist(a, b)


def affine_warp(image: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    grid = F.affine_grid(theta, [1, 3, 5, 5], align_corners=False)
    return F.grid_sample(image, grid, align_corners=False, padding_mode="border")


# -- layers ------------------------------------------------------------------------------------
def layer_norm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, (5,), weight, bias)


def gelu_mlp(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
    return F.gelu(x @ w1) @ w2


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v


def log_sum_exp(x: torch.Tensor) -> torch.Tensor:
    return torch.logsumexp(x, dim=-1)


# -- custom Functions --------------------------------------------------------------------------
class Cube(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x ** 3

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * 3 * x * x


class LinearFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias):
        ctx.save_for_backward(x, weight)
        return x @ weight.t() + bias

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        return grad @ weight, grad.t() @ x, grad.sum(0)


class ScaledSoftplus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, beta):
        ctx.save_for_backward(x, beta)
        return F.softplus(x * beta) / beta

    @staticmethod
    def backward(ctx, grad):
        x, beta = ctx.saved_tensors
        sig = torch.sigmoid(x * beta)
        softplus = F.softplus(x * beta)
        return grad * sig, (grad * (x * sig / beta - softplus / beta ** 2)).sum().reshape(1)


FUNCTIONS: dict[str, tuple[Callable[..., torch.Tensor],
                           Callable[[torch.Generator], Inputs]]] = {
    "rgb_to_grayscale": (rgb_to_grayscale, _image),
    "rgb_to_ycbcr": (rgb_to_ycbcr, _image),
    "ycbcr_to_rgb": (ycbcr_to_rgb, _image),
    "rgb_to_xyz": (rgb_to_xyz, _image),
    "linear_to_srgb": (linear_to_srgb, _image),
    "adjust_gamma": (adjust_gamma, lambda g: (*_image(g), _t(g, 1, low=0.5, high=2.0))),
    "normalize_image": (normalize_image, _image),
    "adjust_saturation": (adjust_saturation, lambda g: (*_image(g), _t(g, 1, low=0.5))),
    "box_blur": (box_blur, _image),
    "gaussian_blur": (gaussian_blur, _image),
    "sobel_magnitude": (sobel_magnitude, _image),
    "laplacian": (laplacian, _image),
    "unsharp_mask": (unsharp_mask, _image),
    "average_pool": (average_pool, _image),
    "bilateral_weights": (bilateral_weights, _image),
    "total_variation": (total_variation, _image),
    "mse_loss": (mse_loss, _pair),
    "huber_loss": (huber_loss, _pair),
    "bce_with_logits": (bce_with_logits, _pair),
    "cross_entropy": (cross_entropy, _logits),
    "focal_loss": (focal_loss, _logits),
    "kl_divergence": (kl_divergence, _pair),
    "dice_loss": (dice_loss, _pair),
    "cosine_loss": (cosine_loss, _pair),
    "charbonnier_loss": (charbonnier_loss, _pair),
    "rotation_2d": (rotation_2d, lambda g: (_t(g, ()), _t(g, 4, 2))),
    "homogeneous_to_euclidean": (homogeneous_to_euclidean, _points),
    "transform_points": (transform_points, lambda g: (_t(g, 3, 3), _t(g, 4, 2))),
    "rodrigues": (rodrigues, lambda g: (_t(g, 2, 3, low=0.2, high=1.0),)),
    "quaternion_normalize": (quaternion_normalize, lambda g: (_t(g, 3, 4),)),
    "pairwise_distance": (pairwise_distance, lambda g: (_t(g, 3, 2), _t(g, 4, 2))),
    "affine_warp": (affine_warp, lambda g: (*_image(g), _t(g, 1, 2, 3, low=-0.3, high=0.3))),
    "layer_norm": (layer_norm, lambda g: (_t(g, 3, 5), _t(g, 5), _t(g, 5))),
    "gelu_mlp": (gelu_mlp, lambda g: (_t(g, 2, 4), _t(g, 4, 6), _t(g, 6, 3))),
    "attention": (attention, lambda g: (_t(g, 1, 3, 4), _t(g, 1, 3, 4), _t(g, 1, 3, 4))),
    "log_sum_exp": (log_sum_exp, lambda g: (_t(g, 3, 5),)),
    "cube_function": (Cube.apply, lambda g: (_t(g, 8),)),
    "linear_function": (LinearFunction.apply, lambda g: (_t(g, 4, 6), _t(g, 3, 6), _t(g, 3))),
    "scaled_softplus_function": (ScaledSoftplus.apply,
                                 lambda g: (_t(g, 6), _t(g, 1, low=0.5, high=2.0))),
}
