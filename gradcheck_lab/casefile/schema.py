"""The case-file format, defined once: pydantic models that validate a case and give its
JSON Schema. Values keep their exactness: numbers come back as Fractions, tensors as object
arrays of Fractions (ints for integer tensors), expressions as text for the parser.
"""

from __future__ import annotations

import keyword
import math
import re
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from typing import Annotated, Any, Literal, get_args

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    PlainValidator,
    Tag,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from gradcheck_lab.dtypes import EPSILON
from gradcheck_lab.ops import OPS

FLOAT64_MAX = Fraction(np.finfo(np.float64).max)
# Decimal exponents beyond this are outside float64 (whose range is about 1e-324..1e308): refused
# before Fraction(Decimal) builds a 10**99999999 denominator for '1e-99999999'.
MAX_DECIMAL_EXPONENT = 400
MAX_DECIMAL_DIGITS = 800
INT64_RANGE = (-(2**63), 2**63 - 1)
MAX_LITERAL_DIMS = 8
MAX_POINTS = 64  # each point is a full three-way check
# Each training step is a forward and backward of the user's model plus a float64 forward of
# the spec (for the loss curve): a thousand stays within seconds for MNIST-sized models.
MAX_TRAINING_STEPS = 1000
Dtype = Literal["float64", "float32", "float16", "bfloat16"]
DTYPES: tuple[str, ...] = get_args(Dtype)
_DEVICE = re.compile(r"^(cpu|cuda(:[0-9]+)?)$")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_CASE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.+-]*$")


def _fail(kind: str, message: str) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def describe(value: Any) -> str:
    """A short rendering of a user's value for error messages."""
    if isinstance(value, Fraction):
        value = value.numerator if value.denominator == 1 else float(value)
    text = str(value) if isinstance(value, Decimal) else repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def to_fraction(value: Any) -> Fraction:
    """An exact, finite Fraction for a number; a validation error for anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, Fraction,
                                                         np.integer, np.floating)):
        raise _fail("number", f"expected a number, got {describe(value)}")
    if isinstance(value, (float, np.floating)) and not math.isfinite(value):
        raise _fail("number", f"{value} is not allowed: values must be finite numbers")
    if isinstance(value, Decimal) and not value.is_finite():
        raise _fail("number", f"{value} is not allowed: values must be finite numbers")
    if isinstance(value, Decimal) and len(value.as_tuple().digits) > MAX_DECIMAL_DIGITS:
        # Exact conversion is quadratic in the digits (2 million took 97 s to read).
        raise _fail("number", f"{describe(value)} has {len(value.as_tuple().digits)} digits "
                              f"(at most {MAX_DECIMAL_DIGITS}: a float64 written exactly "
                              "needs at most 767)")
    if isinstance(value, Decimal) and abs(value.adjusted()) > MAX_DECIMAL_EXPONENT and value:
        raise _fail("number", f"{describe(value)} is outside the float64 range")
    exact = Fraction(value) if not isinstance(value, np.generic) else Fraction(value.item())
    if abs(exact) > FLOAT64_MAX:
        raise _fail("number", f"{describe(value)} is beyond the float64 range")
    return exact


def _number(value: Any) -> Fraction:
    return to_fraction(value)


def _positive(value: Any) -> float:
    exact = to_fraction(value)
    if exact <= 0:
        raise _fail("positive", f"expected a positive number, got {describe(value)}")
    # Checked as the float64 it is used as: 1e-400 is positive as written and 0.0 as a float.
    as_float = float(exact)
    if as_float == 0.0:
        raise _fail("positive", f"{describe(value)} is 0 as a float64: expected a positive "
                                "number at least 5e-324")
    return as_float


def _non_negative(value: Any) -> float:
    exact = to_fraction(value)
    if exact < 0:
        raise _fail("non_negative", f"expected a number >= 0, got {describe(value)}")
    return float(exact)


def _points(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_POINTS:
        raise _fail("points", f"expected a whole number from 1 to {MAX_POINTS}, "
                              f"got {describe(value)}")
    return value


def _order(value: Any) -> int:
    if isinstance(value, bool) or value not in (1, 2) or not isinstance(value, int):
        raise _fail("order", f"expected 1 or 2, got {describe(value)}")
    return value


def _training_steps(value: Any) -> int:
    if (isinstance(value, bool) or not isinstance(value, int)
            or not 1 <= value <= MAX_TRAINING_STEPS):
        raise _fail("steps", f"expected a whole number from 1 to {MAX_TRAINING_STEPS}, "
                             f"got {describe(value)}")
    return value


def _step_ref(value: Any) -> Any:
    # A callable only comes from the Python API (check(training={"step": fn})): YAML text
    # constructs no callables, so a case file always gives FILE.py:NAME.
    if isinstance(value, str) or (callable(value) and not isinstance(value, type)):
        return value
    raise _fail("step", f"expected FILE.py:NAME, got {describe(value)}")


MAX_CONSTANT_ITEMS = 10_000
MAX_CONSTANT_TEXT = 200
_PARAMETER_PATH = re.compile(r"^[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*$")


def _constant(value: Any) -> Any:
    """A value for ``constants:``: a number (an int stays an int, a decimal is the nearest
    float), a bool, a short string, or a list of those (nested), as the impl will get it."""
    count = 0

    def walk(item: Any, depth: int) -> Any:
        nonlocal count
        count += 1
        if count > MAX_CONSTANT_ITEMS or depth > MAX_LITERAL_DIMS:
            raise _fail("constant", f"a constant holds at most {MAX_CONSTANT_ITEMS} items, "
                                    f"{MAX_LITERAL_DIMS} lists deep")
        if isinstance(item, bool):
            return item
        if isinstance(item, str):
            if len(item) > MAX_CONSTANT_TEXT:
                raise _fail("constant", f"a constant string has at most {MAX_CONSTANT_TEXT} "
                                        "characters")
            return item
        if isinstance(item, list):
            return [walk(child, depth + 1) for child in item]
        if isinstance(item, (int, float, Decimal, Fraction, np.number)):
            exact = to_fraction(item)  # finite, within float64's range
            if isinstance(item, (int, np.integer)):
                return int(item)
            return float(exact)  # the binary value torch computes with
        raise _fail("constant", f"a constant is a number, a bool, a string or a list of them, "
                                f"got {describe(item)}")

    return walk(value, 0)


def _parameter_path(value: Any) -> str:
    if not isinstance(value, str) or not _PARAMETER_PATH.match(value) or len(value) > 200:
        raise _fail("name", f"{describe(value)} is not a parameter name of a module "
                            "(dotted, as named_parameters() gives: fc1.weight, 0.bias)")
    return value


def _seed(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise _fail("seed", f"expected a whole number in [0, 2**63), got {describe(value)}")
    return value


def tensor_literal(value: Any) -> np.ndarray:
    """Nested lists of numbers (or an array) -> an object array of exact Fractions."""
    if hasattr(value, "detach"):  # a torch tensor given through the Python API
        layout, device = str(getattr(value, "layout", "")), str(getattr(value, "device", ""))
        if layout != "torch.strided" or device == "meta":
            raise _fail("tensor", f"expected a dense tensor with values, got a {layout} "
                                  f"tensor on {device}")
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "iuf" or value.size == 0:
            raise _fail("tensor", "expected a non-empty array of real numbers")
        if value.dtype.kind == "f" and not np.isfinite(value).all():
            raise _fail("tensor", "NaN or inf in a tensor: values must be finite numbers")
        return value.astype(np.int64 if value.dtype.kind in "iu" else np.float64)
    if not isinstance(value, list):
        return np.asarray(to_fraction(value), dtype=object).reshape(())
    shape: list[int] = []
    probe: Any = value
    while isinstance(probe, list):
        if not probe:
            raise _fail("tensor", "empty lists are not allowed in a tensor")
        shape.append(len(probe))
        if len(shape) > MAX_LITERAL_DIMS:
            raise _fail("tensor", f"tensor nests deeper than {MAX_LITERAL_DIMS} dims")
        probe = probe[0]
    flat: list[Fraction] = []

    def walk(item: Any, depth: int, where: str) -> None:
        if depth == len(shape):
            if isinstance(item, list):
                raise _fail("tensor", f"ragged tensor: {where or 'value'} is nested deeper "
                                      "than its neighbours")
            try:
                flat.append(to_fraction(item))
            except PydanticCustomError as exc:
                raise _fail("tensor", f"element {where}: {exc.message()}") from None
            return
        if not isinstance(item, list) or len(item) != shape[depth]:
            raise _fail("tensor", f"ragged tensor: {where or 'value'} should be a list of "
                                  f"{shape[depth]} items like its neighbours")
        for i, child in enumerate(item):
            walk(child, depth + 1, f"{where}[{i}]")

    walk(value, 0, "")
    array = np.empty(len(flat), dtype=object)
    array[:] = flat
    return array.reshape(shape)


def _identifier(value: Any) -> str:
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise _fail("name", f"{describe(value)} is not a valid name (letters, digits, _)")
    if keyword.iskeyword(value) or keyword.issoftkeyword(value):
        raise _fail("name", f"{value!r} is a Python keyword and cannot be a name")
    if value.startswith("__"):
        raise _fail("name", f"{value!r}: names starting with __ are not allowed")
    if value in OPS and OPS[value].callable:
        raise _fail("name", f"{value!r} is a function of the case language and cannot be a name")
    return value


def fd_step_range(dtype: str) -> tuple[float, float]:
    """The finite-difference steps (relative to max(1, |x|)) that leave a difference quotient
    meaningful for a function that computes in ``dtype``.

    Finite differences call the function in float64, but an impl may compute in the case's
    dtype all the same (it casts, or refuses float64 and is called in the dtype), and the
    case's ``fd_step`` replaces the step derived from its measured precision
    (``subject.precision``). Such a function rounds each value by about eps (the dtype's
    epsilon, relative to the value), so the central difference at a relative step h carries a
    round-off error of about eps/h relative to a derivative of the function's own scale (the
    floor of its error bar, ``oracles.finite_difference.central_difference``), and a
    truncation error of about h². Below: the step where round-off alone costs 1% of the
    derivative, h = 100 eps; where the dtype cannot reach 1% at any step (bfloat16, where
    the error is least, about eps^(2/3) = 4%, at the central-difference optimum h = eps^(1/3),
    the step ``Precision.relative_step`` derives), that optimum: a smaller step only adds
    round-off. So float64 2.2e-14, float32 1.2e-5, float16 9.8e-2, bfloat16 2.0e-1. Above: 1,
    whatever the dtype: a wider step moves x by more than max(1, |x|) and the quotient is a
    secant, not a slope."""
    eps = EPSILON[dtype]
    return min(100 * eps, eps ** (1 / 3)), 1.0


# The finite-difference steps that leave a difference quotient meaningful in float64 (why:
# fd_step_range).
FD_STEP_RANGE = fd_step_range("float64")


def is_valid_name(value: str) -> bool:
    """Whether ``value`` may name an input of a case (the rules ``_identifier`` enforces)."""
    try:
        _identifier(value)
    except ValueError:
        return False
    return True


def _case_name(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not _CASE_NAME.fullmatch(value) or len(value) > 100:
        raise _fail("name", f"{describe(value)} is not a valid case name "
                            "(letters, digits and _ . + -, at most 100)")
    return value


def _expression(value: Any) -> str | Fraction:
    if isinstance(value, str):
        return value
    try:
        return to_fraction(value)
    except PydanticCustomError:
        raise _fail("expression", f"expected an expression (text) or a number, "
                                  f"got {describe(value)}") from None


@dataclass(frozen=True)
class ExpectedNumbers:
    """Hand-worked numbers of ``expect:``: exact values (Fractions; inf, -inf and nan as
    floats, outside a function's domain) and the precision each was written to, half a unit
    in its last decimal digit (0 for an integer, an expression or a number from Python: those
    are exact)."""

    values: np.ndarray
    halfunits: np.ndarray


def _expression_or_tensor(value: Any) -> str | ExpectedNumbers:
    if isinstance(value, str):
        return value
    if hasattr(value, "detach") or isinstance(value, np.ndarray):
        values = tensor_literal(value)
        return ExpectedNumbers(values, np.zeros(values.shape))
    # The shape and every finite number validated as for inputs (the non-finite stand in as
    # 0 there); then each element kept with the digits it was written with.
    skeleton = tensor_literal(_nested(value, lambda x: 0 if _not_finite(x) else x))
    flat: list[tuple[Any, float]] = []
    _nested(value, lambda x: flat.append(_expected_number(x)))
    values = np.empty(len(flat), dtype=object)
    values[:] = [number for number, _ in flat]
    halfunits = np.array([half for _, half in flat], dtype=np.float64)
    return ExpectedNumbers(values.reshape(skeleton.shape), halfunits.reshape(skeleton.shape))


def _nested(value: Any, apply: Any) -> Any:
    if isinstance(value, list):
        return [_nested(item, apply) for item in value]
    return apply(value)


def _not_finite(value: Any) -> bool:
    if isinstance(value, Decimal):
        return not value.is_finite()
    return isinstance(value, float) and not math.isfinite(value)


def _expected_number(value: Any) -> tuple[Any, float]:
    """The number and half a unit in its last written digit: a YAML decimal as written; an
    integer, and a number from Python (a float, a numpy scalar), exactly (0)."""
    if _not_finite(value):
        return float(value), 0.0
    exact = to_fraction(value)
    if isinstance(value, Decimal):
        exponent = value.as_tuple().exponent
        return exact, 0.5 * 10.0 ** exponent if isinstance(exponent, int) else 0.0
    return exact, 0.0


def _device(value: Any) -> str:
    if not isinstance(value, str) or not _DEVICE.fullmatch(value):
        raise _fail("device", f"unknown device {describe(value)} (expected cpu, cuda or cuda:N)")
    return value


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or len(value) > MAX_LITERAL_DIMS or not all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in value
    ):
        raise _fail("shape", f"expected a list of at most {MAX_LITERAL_DIMS} positive "
                             f"integers, got {describe(value)}")
    return tuple(value)


Number = Annotated[Fraction, PlainValidator(_number), WithJsonSchema({"type": "number"})]
PositiveNumber = Annotated[float, PlainValidator(_positive),
                           WithJsonSchema({"type": "number", "exclusiveMinimum": 0})]
NonNegativeNumber = Annotated[float, PlainValidator(_non_negative),
                              WithJsonSchema({"type": "number", "minimum": 0})]
Points = Annotated[int, PlainValidator(_points),
                   WithJsonSchema({"type": "integer", "minimum": 1, "maximum": MAX_POINTS})]
Order = Annotated[int, PlainValidator(_order), WithJsonSchema({"enum": [1, 2]})]
TrainingSteps = Annotated[int, PlainValidator(_training_steps),
                          WithJsonSchema({"type": "integer", "minimum": 1,
                                          "maximum": MAX_TRAINING_STEPS})]
StepRef = Annotated[Any, PlainValidator(_step_ref), WithJsonSchema({"type": "string"})]
Seed = Annotated[int, PlainValidator(_seed),
                 WithJsonSchema({"type": "integer", "minimum": 0})]
# Nested lists of numbers are recursive: pydantic cannot name them, so its schema carries this
# placeholder and case_file_json_schema() puts the real reference and definition in.
_NESTED_NUMBERS = {"x-gradcheck-lab": "nested-numbers"}
TensorLiteral = Annotated[Any, PlainValidator(tensor_literal), WithJsonSchema(_NESTED_NUMBERS)]
# The tensor form of an input is a list (a bare number is the scalar form).
TensorList = Annotated[Any, PlainValidator(tensor_literal),
                       WithJsonSchema({"type": "array", "minItems": 1, "items": _NESTED_NUMBERS})]
Identifier = Annotated[str, PlainValidator(_identifier),
                       WithJsonSchema({"type": "string", "pattern": _IDENTIFIER.pattern})]
CaseName = Annotated[str, PlainValidator(_case_name),
                     WithJsonSchema({"type": "string", "pattern": _CASE_NAME.pattern})]
Expression = Annotated[Any, PlainValidator(_expression),
                       WithJsonSchema({"type": ["string", "number"]})]
ExpressionOrTensor = Annotated[Any, PlainValidator(_expression_or_tensor),
                               WithJsonSchema({"anyOf": [{"type": "string"}, _NESTED_NUMBERS]})]
ConstantValue = Annotated[Any, PlainValidator(_constant),
                          WithJsonSchema({"type": ["number", "boolean", "string", "array"]})]
ParameterPath = Annotated[str, PlainValidator(_parameter_path),
                          WithJsonSchema({"type": "string", "pattern": _PARAMETER_PATH.pattern})]
Device = Annotated[str, PlainValidator(_device),
                   WithJsonSchema({"type": "string", "pattern": _DEVICE.pattern})]
ShapeList = Annotated[tuple[int, ...], PlainValidator(_shape),
                      WithJsonSchema({"type": "array", "items": {"type": "integer",
                                                                 "minimum": 1}})]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              arbitrary_types_allowed=True)


class LiteralInput(_Strict):
    """``{value: [...], dtype: int64, requires_grad: false}``."""

    value: TensorLiteral
    dtype: Literal["int64"] | None = None
    requires_grad: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> LiteralInput:
        if self.dtype == "int64":
            values = np.asarray(self.value, dtype=object).reshape(-1)
            for item in values:
                if Fraction(item).denominator != 1:
                    raise _fail("int64", f"int64 tensor holds {describe(item)}, not an integer")
                if not INT64_RANGE[0] <= item <= INT64_RANGE[1]:
                    raise _fail("int64", f"int64 tensor holds {describe(item)}, outside the "
                                         "int64 range")
            if self.requires_grad:
                raise _fail("int64", "integer tensors are never differentiated: "
                                     "drop requires_grad")
        return self


# Standard normal draws beyond this many standard deviations have a probability below 1e-23:
# mean ± this × std bounds every draw a case will see.
RANDN_SPREAD = 10


class RandomInput(_Strict):
    """``{shape: [...], init: randn|uniform|randint|zeros|ones, seed: N, ...}``."""

    shape: ShapeList
    init: Literal["randn", "uniform", "randint", "zeros", "ones"]
    seed: Seed | None = None
    low: Number | None = None
    high: Number | None = None
    mean: Number | None = None
    std: PositiveNumber | None = None
    dtype: Literal["int64"] | None = None
    requires_grad: bool | None = None

    @model_validator(mode="after")
    def _check(self) -> RandomInput:
        if self.init != "randn" and (self.mean is not None or self.std is not None):
            raise _fail("init", "mean and std apply to init: randn only")
        if self.init in ("randn", "zeros", "ones") and (
                self.low is not None or self.high is not None):
            raise _fail("init", f"low and high apply to uniform and randint, not {self.init}")
        if self.init == "randint":
            if self.high is None:
                raise _fail("init", "randint needs high (and optionally low, default 0)")
            for bound in (self.low, self.high):
                if bound is not None and bound.denominator != 1:
                    raise _fail("init", f"randint bounds must be integers, got "
                                        f"{describe(bound)}")
                # torch draws below high, which must itself be an int64.
                if bound is not None and not INT64_RANGE[0] <= bound <= INT64_RANGE[1]:
                    raise _fail("init", f"randint bound {describe(bound)} is outside the "
                                        "int64 range")
            if self.requires_grad:
                raise _fail("init", "randint inputs are integers and never differentiated")
        elif self.dtype == "int64":
            raise _fail("init", f"dtype int64 goes with init: randint, not {self.init}")
        low = self.low if self.low is not None else Fraction(0)
        high = self.high if self.high is not None else Fraction(1)
        if self.init in ("uniform", "randint") and not low < high:
            raise _fail("init", f"low must be below high, got low={low} high={high}")
        # The draws are computed in float64 (rand·(high - low) + low, randn·std + mean): a
        # width or a std whose draws overflow would make inf inputs.
        largest = float(np.finfo(np.float64).max)
        if self.init == "uniform" and not abs(high - low) <= largest:
            raise _fail("init", f"the range's width high - low overflows float64 (at most "
                                f"{largest:.3g}): the draws would be inf")
        if self.init == "randn":
            spread = abs(self.mean or Fraction(0)) + RANDN_SPREAD * Fraction(self.std or 1)
            if not spread <= largest:
                raise _fail("init", f"|mean| + {RANDN_SPREAD}·std is beyond the float64 range: "
                                    "the draws would overflow to inf")
        return self


# Union tags appear in pydantic's error locations next to data keys: spelled so that no key of a
# case (an identifier) can be mistaken for one.
_SCALAR, _TENSOR, _LITERAL, _RANDOM = "<scalar>", "<tensor>", "<value form>", "<init form>"


def _input_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return _LITERAL if "value" in value else _RANDOM
    if isinstance(value, (list, np.ndarray)) or hasattr(value, "detach"):
        return _TENSOR
    if isinstance(value, (int, float, Decimal, Fraction, np.number)) and not isinstance(
            value, bool):
        return _SCALAR
    return None


InputSpecModel = Annotated[
    Annotated[Number, Tag(_SCALAR)]
    | Annotated[TensorList, Tag(_TENSOR)]
    | Annotated[LiteralInput, Tag(_LITERAL)]
    | Annotated[RandomInput, Tag(_RANDOM)],
    Discriminator(
        _input_kind,
        custom_error_type="input",
        custom_error_message="an input is a number, a nested list of numbers, "
                             "{value: ...} or {shape: [...], init: ...}",
    ),
]


class ToleranceModel(_Strict):
    rtol: PositiveNumber | None = None
    atol: PositiveNumber | None = None


class ExpectModel(_Strict):
    """Hand-worked answers: the output's value and gradients (numbers, lists or expressions)."""

    value: ExpressionOrTensor | None = None
    grad: dict[Identifier, ExpressionOrTensor] | None = None


class TrainingModel(_Strict):
    """``training:``: the user's training step, checked against the spec's gradient.

    ``step`` (FILE.py:NAME, found like ``impl``) is called as ``step(params=..., batch=...,
    lr=...)``, updates the params in place and returns the loss; see "Training steps" in
    docs/writing-cases.md.
    """

    step: StepRef
    params: list[Identifier] = Field(min_length=1)
    lr: PositiveNumber
    steps: TrainingSteps = 5
    # mnist: the batch's images and labels replaced by MNIST images (every digit) when the
    # optional extra gradcheck-lab[mnist] is installed (the case's own inputs otherwise, said in
    # the notes).
    data: Literal["synthetic", "mnist"] = "synthetic"

    @field_validator("params")
    @classmethod
    def _no_repeated_params(cls, values: list[str]) -> list[str]:
        if len(set(values)) != len(values):
            raise _fail("repeated", f"params lists {describe(values)} with repeats")
        return values


def _tolerance_kind(value: Any) -> str:
    if isinstance(value, dict) and set(value) & set(DTYPES):
        return "<per dtype>"
    return "<rtol and atol>"


ToleranceSpec = Annotated[
    Annotated[ToleranceModel, Tag("<rtol and atol>")]
    | Annotated[dict[Dtype, ToleranceModel], Tag("<per dtype>")],
    Discriminator(_tolerance_kind),
]


class CaseModel(_Strict):
    """One case. See docs/case-format.md (generated from this schema) for each key."""

    name: CaseName | None = None
    description: str | None = None
    inputs: dict[Identifier, InputSpecModel] = Field(min_length=1)
    let: dict[Identifier, Expression] | None = None
    # One expression, or several by name ({o: ..., attn: ...}): the impl returns a tuple in
    # that order or a dict, and every output's Jacobian is checked jointly. Left out with an
    # impl: the spec is traced from the impl's own forward (oracles.trace).
    output: Expression | dict[Identifier, Expression] | None = None
    impl: str | None = None
    # Values the impl gets as keyword arguments (MulConstant's 5.0, a reversal's lambd); the
    # numbers are names in the expressions too.
    constants: dict[Identifier, ConstantValue] | None = None
    # impl: FILE.py:NAME gives an nn.Module (NAME(), or NAME(**constants)): these of its
    # parameters are the inputs named; its forward gets the other inputs in order.
    params: dict[ParameterPath, Identifier] | None = None
    # The VJP the backward means to compute where it is not the forward's derivative on
    # purpose (straight-through, gradient reversal): an expression of the inputs and
    # grad_output, per input.
    surrogate: dict[Identifier, Expression] | None = None
    expect: ExpectModel | None = None
    dtypes: list[Dtype] = Field(default=["float64"], min_length=1)
    devices: list[Device] = Field(default=["cpu"], min_length=1)
    tolerance: ToleranceSpec | None = None
    # Finite differences' step, relative to max(1, |x|), in place of the derived one (torch's
    # gradcheck eps, given explicitly); the error bars still come from h and 2h.
    fd_step: PositiveNumber | None = None
    seed: Seed = 0
    # Backward run twice on fresh graphs must agree this closely (None: exactly on cpu, within
    # the dtype's tolerance on cuda, where atomic adds legitimately reorder sums).
    nondet_tol: NonNegativeNumber | None = None
    # Check at this many points: the first as the inputs say, then random inputs re-drawn.
    points: Points = 1
    # A point exactly on a kink (relu at 0, a tie in max_pool2d) is moved off it instead of
    # being skipped: every real input is shifted a little (seeded), the move is reported.
    avoid_kinks: bool = False
    # 2: Hessian-vector products are checked too (double backward with create_graph).
    order: Order = 1
    # forward: Jacobian-vector products (forward-mode AD) are checked too.
    modes: list[Literal["reverse", "forward"]] = Field(default=["reverse"], min_length=1)
    # The user's training step (model, loss, SGD update), checked against the spec.
    training: TrainingModel | None = None

    @field_validator("dtypes", "devices", "modes")
    @classmethod
    def _no_repeats(cls, values: list[str], info: ValidationInfo) -> list[str]:
        if len(set(values)) != len(values):
            raise _fail("repeated", f"{info.field_name} lists {describe(values)} with repeats")
        return values

    @field_validator("fd_step")
    @classmethod
    def _meaningful_step(cls, value: float | None, info: ValidationInfo) -> float | None:
        # The step must suit a function computing in each of the case's dtypes (why and how
        # much: fd_step_range); the coarsest decides. A case whose dtypes are invalid is
        # held to float64's range (its dtypes are an error of their own).
        if value is None:
            return value
        dtypes = info.data.get("dtypes") or ["float64"]
        coarsest = max(dtypes, key=lambda dtype: EPSILON.get(dtype, 0.0))
        low, high = fd_step_range(coarsest if coarsest in EPSILON else "float64")
        if not low <= value <= high:
            where = ("in float64" if coarsest == "float64"
                     else f"for a function that computes in {coarsest}")
            raise _fail("fd_step", f"{describe(value)} leaves finite differences meaningless: "
                                   f"the step must be in [{low:.3g}, {high:g}] (relative to "
                                   f"max(1, |x|), {where})")
        return value

    @field_validator("modes")
    @classmethod
    def _reverse_is_the_base(cls, values: list[str]) -> list[str]:
        if "reverse" not in values:
            raise _fail("modes", "modes must include reverse: the reverse-mode check is the "
                                 "base of every verdict (write [reverse, forward])")
        return values


CASE_KEYS = tuple(CaseModel.model_fields)


def case_file_json_schema() -> dict[str, Any]:
    """The JSON Schema of a case file (one case, or ``cases:`` and a list), from the same
    models that validate cases, so the two cannot drift."""
    case = CaseModel.model_json_schema(ref_template="#/$defs/{model}")
    definitions = case.pop("$defs", {})
    # A case writes its spec (output) or has it traced from an impl: without impl, output
    # is required (an if/then, so that a validator names the missing key).
    case["if"] = {"not": {"required": ["impl"]}}
    case["then"] = {"required": ["output"]}
    definitions["Case"] = case
    definitions["NestedNumbers"] = {"anyOf": [
        {"type": "number"},
        {"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/NestedNumbers"}},
    ]}
    for name, definition in definitions.items():
        _describe(name, definition)
    document = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "gradcheck-lab case file",
        "description": "One case, or several under cases:. See docs/case-format.md.",
        # if/then/else, not anyOf: a validator reports the errors of the one form the file
        # is (a list under cases:, or one case), at their key, not every form's.
        "if": {"type": "object", "required": ["cases"]},
        "then": {"type": "object", "additionalProperties": False, "required": ["cases"],
                 "properties": {"cases": {"type": "array", "minItems": 1,
                                          "description": "The cases of the file, in order.",
                                          "items": {"$ref": "#/$defs/Case"}}}},
        "else": {"$ref": "#/$defs/Case"},
        "$defs": definitions,
    }
    return _replace_placeholders(document)


def _describe(name: str, definition: dict[str, Any]) -> None:
    """Each key's description (editor hovers; docs/case-format.md is written from them)."""
    from gradcheck_lab.casefile.descriptions import DESCRIPTIONS, INTROS

    if name in INTROS:
        definition["description"] = INTROS[name]
    for key, node in definition.get("properties", {}).items():
        text = DESCRIPTIONS.get(name, {}).get(key)
        if text is not None:
            node["description"] = text


def _replace_placeholders(value: Any) -> Any:
    if isinstance(value, dict):
        replaced = {k: _replace_placeholders(v) for k, v in value.items()
                    if (k, v) not in _NESTED_NUMBERS.items()}
        if len(replaced) < len(value):  # the placeholder was there, maybe beside a title
            replaced["$ref"] = "#/$defs/NestedNumbers"
        return replaced
    if isinstance(value, list):
        return [_replace_placeholders(v) for v in value]
    return value
