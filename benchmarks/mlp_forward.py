"""The MNIST MLP of cases/mnist_mlp_ce.yaml as a plain torch function, for trace_cost.py."""

import torch
from torch.nn import functional


def mlp(x, target, W1, b1, W2, b2, W3, b3):  # noqa: N803 (the case's input names)
    h1 = torch.relu(functional.linear(x, W1, b1))
    h2 = torch.relu(functional.linear(h1, W2, b2))
    return functional.cross_entropy(functional.linear(h2, W3, b3), target)
