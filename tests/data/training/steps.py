"""Training steps for tests/test_training.py: a right one, and ones with the bugs people make.

Each is called as step(params=..., batch=..., lr=...) and returns the loss; the model is the
spec of mlp.yaml, linear -> tanh -> linear -> cross_entropy.
"""

import torch
import torch.nn.functional as F


def loss_of(params, batch):
    hidden = torch.tanh(F.linear(batch["x"], params["W1"], params["b1"]))
    return F.cross_entropy(F.linear(hidden, params["W2"], params["b2"]), batch["target"])


def sgd_step(params, batch, lr):
    """Right: fresh gradients each call, W - lr * grad in place."""
    for p in params.values():
        p.grad = None
    loss = loss_of(params, batch)
    loss.backward()
    with torch.no_grad():
        for p in params.values():
            p -= lr * p.grad
    return loss.item()


def optim_step(params, batch, lr):
    """Right, with torch.optim.SGD."""
    optimizer = torch.optim.SGD(params.values(), lr=lr)
    optimizer.zero_grad()
    loss = loss_of(params, batch)
    loss.backward()
    optimizer.step()
    return loss.detach()


def no_zero_grad(params, batch, lr):
    """Forgets to clear .grad: backward() adds to the previous call's gradient."""
    loss = loss_of(params, batch)
    loss.backward()
    with torch.no_grad():
        for p in params.values():
            p -= lr * p.grad
    return loss.item()


def double_lr(params, batch, lr):
    """Uses the learning rate twice: W - 2·lr·grad."""
    for p in params.values():
        p.grad = None
    loss = loss_of(params, batch)
    loss.backward()
    with torch.no_grad():
        for p in params.values():
            p -= 2 * lr * p.grad
    return loss.item()


def sign_error(params, batch, lr):
    """Climbs the loss: W + lr·grad."""
    for p in params.values():
        p.grad = None
    loss = loss_of(params, batch)
    loss.backward()
    with torch.no_grad():
        for p in params.values():
            p += lr * p.grad
    return loss.item()


def forgets_b2(params, batch, lr):
    """Updates every parameter but b2."""
    for p in params.values():
        p.grad = None
    loss = loss_of(params, batch)
    loss.backward()
    with torch.no_grad():
        for name, p in params.items():
            if name != "b2":
                p -= lr * p.grad
    return loss.item()


def momentum_step(params, batch, lr):
    """Keeps state between calls (momentum 0.9, a buffer kept on each tensor): its first
    update is W - lr·grad, its second is not."""
    for p in params.values():
        p.grad = None
    loss = loss_of(params, batch)
    loss.backward()
    with torch.no_grad():
        for p in params.values():
            v = getattr(p, "velocity", None)
            p.velocity = p.grad.clone() if v is None else 0.9 * v + p.grad
            p -= lr * p.velocity
    return loss.item()


def replaces_params(params, batch, lr):
    """Rebinds the dict's entries instead of updating the tensors."""
    loss = loss_of(params, batch)
    grads = torch.autograd.grad(loss, list(params.values()))
    for (name, p), g in zip(list(params.items()), grads):
        params[name] = (p - lr * g).detach().requires_grad_()
    return loss.item()


def returns_nothing(params, batch, lr):
    sgd_step(params, batch, lr)


def raises(params, batch, lr):
    raise ValueError("no batch today")
