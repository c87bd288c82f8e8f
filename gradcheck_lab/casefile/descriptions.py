"""What each key of a case file means, in words: the one source of the JSON Schema's
``description`` of every key and definition (editor hovers) and of docs/case-format.md, which
docs/gen_case_format.py writes from the schema. tests/test_schema.py fails when a key of the
schema has no description here.
"""

from __future__ import annotations

# Each definition of the schema (its title), in a sentence or two.
INTROS: dict[str, str] = {
    "Case": "One case: a mapping at the top of the file, or an item of `cases:`.",
    "LiteralInput": (
        "An input given by its values, when it needs more than a plain number or list: an "
        "integer tensor (class targets) or a constant that is not differentiated."),
    "RandomInput": (
        "An input drawn at random, reproducibly: `g = torch.Generator().manual_seed(seed)`, "
        "then in float64 on CPU `torch.randn(shape, generator=g) * std + mean`, "
        "`torch.rand(shape, generator=g) * (high - low) + low` or "
        "`torch.randint(low, high, shape, generator=g)`, then cast to the case's dtype."),
    "ToleranceModel": (
        "Replaces the derived tolerance (`rtol = sqrt(eps)` of the dtype, `atol` from the "
        "scale of the terms; see [How a verdict is reached](verdicts.md)). Either one "
        "mapping for every dtype, or a mapping from dtype to one of these."),
    "ExpectModel": (
        "Hand-worked answers, checked too: the output's value and the gradient of each "
        "input. A decimal is checked to the digits written (`0.84` means 0.835 to 0.845), an "
        "integer or an expression exactly; `.inf`, `-.inf` and `.nan` are answers too (outside "
        "a function's domain)."),
    "TrainingModel": (
        "The user's training step, checked against the spec's gradient: `step` is called as "
        "`step(params=..., batch=..., lr=...)`, updates the params in place and returns the "
        "loss."),
    "NestedNumbers": (
        "A number, or a non-empty list of NestedNumbers: `2`, `[1.5, -2]`, "
        "`[[1, 0], [0, 1]]`. Integers stay exact; a decimal is the float64 nearest it, the "
        "value torch sees, for every oracle."),
}

# Each key of each definition.
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "Case": {
        "name": "Unique within the file; the file's name when omitted.",
        "description": "Free text, shown by `explain`.",
        "inputs": (
            "Ordered. Each name is an identifier (not a dunder, not a Python keyword); each "
            "value a number, a nested list, a [LiteralInput](#literalinput) or a "
            "[RandomInput](#randominput). Every real-valued input is differentiated unless "
            "`requires_grad: false`."),
        "let": (
            "Ordered steps `name: expression`; each may use the inputs and earlier steps. "
            "`explain` shows each step's local derivatives."),
        "output": (
            "The spec, an expression: a scalar, or a tensor (its whole Jacobian is checked). "
            "The expression language is listed on the [Expressions](expressions.md) page. "
            "Several outputs are a mapping of names to expressions "
            "(`{o: weights @ v, attn: weights}`): the "
            "impl returns a tuple in that order or a dict, every output's Jacobian is checked "
            "jointly (cotangents on all outputs at once, and on each alone), and a mismatch "
            "names its output. `expect.value` is for a single output. Left out in a case "
            "with an `impl`, the spec is traced from the impl's own forward (the aten ops it "
            "runs at the first point); `let`, `expect`, `training` and `surrogate` then need "
            "a written output."),
        "fd_step": (
            "Finite differences' step, relative to `max(1, |x|)`, in place of the one derived "
            "from the function's measured precision (torch's `eps`); the error bars still "
            "come from the steps h and 2h. At most 1, and at least the smallest step that "
            "leaves a difference meaningful in the case's coarsest dtype (100 eps, or eps^(1/3) "
            "where that is smaller: 2.2e-14 for float64, 1.2e-5 for float32)."),
        "impl": (
            "`FILE.py:NAME`: a top-level callable in a Python file next to the case file, "
            "called with every input and every constant as keyword arguments. Autograd and "
            "finite differences then run on it, the symbolic oracle on `output`."),
        "constants": (
            "Values the impl gets as keyword arguments: numbers, bools, strings, or lists of "
            "them (`{k: 5.0, lambd: 0.5}`), so a Function with non-tensor arguments "
            "(`MulConstant.apply(x, k)`) needs no wrapper. Numbers are names in the "
            "expressions too, at the binary value the impl gets (`0.1` is the float)."),
        "params": (
            "Binds an `nn.Module`'s parameters to inputs (`{0.weight: W1, 0.bias: b1}`, as "
            "`named_parameters()` names them): `impl` then names a callable that returns the "
            "module (`NAME()`, or `NAME(**constants)`), which is moved to the case's dtype "
            "and called through `torch.func.functional_call` with the other inputs, in "
            "order, as its forward's arguments."),
        "surrogate": (
            "The gradient a backward means to compute where it is not the forward's "
            "derivative on purpose (straight-through, gradient reversal, gradient scaling): "
            "per input, an expression of the inputs, the constants and `grad_output` (the "
            "output's cotangent), as `{x: \"-lambd * grad_output\"}`. Symbolic vs autograd "
            "then checks that intent, finite differences check the forward's values only, "
            "and the report says so. Reverse mode, first order only."),
        "expect": "Hand-worked answers, checked too: see [ExpectModel](#expectmodel).",
        "dtypes": "One check per dtype.",
        "devices": "One check per device; `cuda` results are `skip` without a GPU.",
        "tolerance": "Replaces the derived tolerance: see [ToleranceModel](#tolerancemodel).",
        "seed": "Seeds the random cotangents and directions.",
        "nondet_tol": (
            "How far a second backward may differ from the first; by default exactly 0 on "
            "cpu, the dtype's tolerance on cuda."),
        "points": (
            "Check at N points: the first as written, then every random input re-drawn "
            "(literals stay)."),
        "avoid_kinks": (
            "`true` moves a point that sits on a kink (relu or abs at 0) off it; otherwise "
            "that element is `skip`."),
        "order": ("`2` checks Hessian-vector products too, three ways (symbolic, double "
                  "backward, a finite difference of the gradient), at any size."),
        "modes": "`[reverse, forward]` checks Jacobian-vector products (forward mode) too.",
        "training": (
            "The user's training step (model, loss, SGD update), checked against the spec's "
            "gradient: see [TrainingModel](#trainingmodel)."),
    },
    "LiteralInput": {
        "value": "The values: a number or nested lists.",
        "dtype": "`int64` for an integer tensor, never differentiated.",
        "requires_grad": "`false` holds the input constant.",
    },
    "RandomInput": {
        "shape": "The tensor's shape.",
        "init": "The distribution, or constant zeros or ones.",
        "seed": "Without it, a seed derived from the input's name (stable across runs).",
        "low": "Lower bound of `uniform` and `randint`.",
        "high": "Upper bound (exclusive) of `uniform` and `randint`.",
        "mean": "Mean of `randn`.",
        "std": "Standard deviation of `randn`.",
        "dtype": "`int64` for an integer tensor; `randint` always gives one.",
        "requires_grad": "`false` holds the input constant.",
    },
    "ToleranceModel": {
        "rtol": "Relative tolerance; `sqrt(eps)` of the dtype when omitted.",
        "atol": "Absolute tolerance; derived from `rtol` and the scale of the terms when omitted.",
    },
    "TrainingModel": {
        "step": "`FILE.py:NAME`, found like `impl`.",
        "params": "The names of the inputs the step updates, without repeats.",
        "lr": "The learning rate passed to the step.",
        "steps": "How many training steps to run.",
        "data": (
            "`mnist` replaces the batch's images and labels by MNIST images, the digits in "
            "turn, when the optional extra `gradcheck-lab[mnist]` is installed (the case's "
            "own inputs otherwise, said in the notes)."),
    },
    "ExpectModel": {
        "value": "The output's value: a number, nested lists, or an expression of the inputs.",
        "grad": (
            "Per input name, its gradient: a number, nested lists, or an expression of the "
            "inputs (`\"x / 2\"`)."),
    },
}
