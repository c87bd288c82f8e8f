"""The training step of cases/mnist_training.yaml: the MLP, its loss and one SGD step.

gradcheck-lab calls ``sgd_step(params=..., batch=..., lr=...)`` with the same tensors call after
call, like a training loop over one batch; the step updates the params in place and returns
the loss. ``optimizer.zero_grad()`` before ``backward()`` matters: backward() adds into
``.grad``, so without it the second step would use the sum of both steps' gradients.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def model(params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    hidden = torch.relu(F.linear(x, params["W1"], params["b1"]))
    return F.linear(hidden, params["W2"], params["b2"])


def sgd_step(params: dict[str, torch.Tensor], batch: dict[str, torch.Tensor],
             lr: float) -> torch.Tensor:
    optimizer = torch.optim.SGD(params.values(), lr=lr)  # plain SGD: no state between calls
    optimizer.zero_grad()
    loss = F.cross_entropy(model(params, batch["x"]), batch["target"])
    loss.backward()
    optimizer.step()
    return loss.detach()
