"""The MNIST MLP of cases/mnist_mlp_ce.yaml as a plain torch function, for trace_cost.py."""

import torch
import torch.nn.functional as F


def mlp(x, target, W1, b1, W2, b2, W3, b3):
    h1 = torch.relu(F.linear(x, W1, b1))
    h2 = torch.relu(F.linear(h1, W2, b2))
    return F.cross_entropy(F.linear(h2, W3, b3), target)
