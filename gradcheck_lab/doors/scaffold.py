"""`gradcheck-lab new NAME`: a small case that passes as it is, with every key shown."""

from __future__ import annotations

import re

NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

CASE_TEMPLATE = """\
# A gradcheck-lab case. Check it with `gradcheck-lab run {name}.yaml` or `pytest {name}.yaml`.
# Editor completion: `gradcheck-lab schema > case.schema.json`, then keep this line:
# yaml-language-server: $schema=case.schema.json
name: {name}
description: tanh of a small linear map, weighted by constants
inputs:                          # in order; each is one of:
  x: [0.5, -1.0, 2.0]            #   a number or nested list (differentiated)
  W: {{shape: [2, 3], init: randn, seed: 0}}   # randn | uniform | randint | zeros | ones
  c: {{value: [1.5, -0.5], requires_grad: false}}   # a constant, not differentiated
{spec_lines}
{impl_line}
# expect:                        # optional hand-worked answers, checked too
#   value: 1.23
#   grad: {{x: [0.1, 0.2, 0.3]}}   # numbers, nested lists, or expressions ("x / 2")
dtypes: [float64, float32]       # also float16, bfloat16
devices: [cpu]                   # add cuda: skipped when no GPU is present
# tolerance: {{rtol: 1e-7, atol: 1e-9}}   # replaces the tolerance derived from the dtype
seed: 0                          # seeds the random cotangents and finite-difference directions
"""

IMPL_TEMPLATE = '''\
"""The implementation under test for {name}.yaml: a custom torch.autograd.Function.

It is called with every input as a keyword argument (torch tensors of the case's dtype and
device) and returns the output. gradcheck-lab checks its backward against the spec.
"""

import torch


class Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z):
        y = torch.tanh(z)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad_output):
        (y,) = ctx.saved_tensors
        return grad_output * (1 - y * y)


def forward(x, W, c):
    return (Tanh.apply(W @ x) * c).sum()
'''


WRITTEN_SPEC = """\
let:                             # optional named steps, each may use the ones before
  h: tanh(W @ x)
output: sum(h * c)               # the spec: differentiated exactly by sympy"""

# With an impl the spec is traced from its forward unless written; the written form is shown.
TRACED_SPEC = """\
# No output: the spec is traced from the impl's own forward, and sympy differentiates that.
# A traced spec is only as right as the forward: when the forward itself is in doubt, write
# the math by hand, which checks the forward too:
# output: sum(tanh(W @ x) * c)"""


def case_text(name: str, with_impl: bool) -> str:
    if with_impl:
        impl_line = f"impl: {name}_impl.py:forward    # the implementation under test"
    else:
        impl_line = (f"# impl: {name}_impl.py:forward  # optional: your torch code under test "
                     "(see `gradcheck-lab new --impl`)")
    spec = TRACED_SPEC if with_impl else WRITTEN_SPEC
    return CASE_TEMPLATE.format(name=name, impl_line=impl_line, spec_lines=spec)


def impl_text(name: str) -> str:
    return IMPL_TEMPLATE.format(name=name)
