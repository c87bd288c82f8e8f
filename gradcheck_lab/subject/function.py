"""The function under test, in torch: the case's impl, or its spec lowered op by op.

Built once per check and handed to the autograd and finite-difference oracles (autograd calls
it in the case's dtype, finite differences in float64). ``impl: FILE.py:NAME`` is imported from
the case file's directory, like a conftest.py: it is the user's own code and runs as such.
Whatever it returns is checked before any oracle uses it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.util
import sys
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from gradcheck_lab.casefile import Case, ImplRef
from gradcheck_lab.errors import ImplError, raised_by_user_code
from gradcheck_lab.ops import OPS, Op
from gradcheck_lab.ops.base import moved_copies
from gradcheck_lab.program import Program
from gradcheck_lab.program.interpret import Form, arguments, input_values, interpret

_MODULES: dict[tuple[Path, int], ModuleType] = {}


def describe_exception(exc: BaseException, near: Path | None = None) -> str:
    """``TypeError: message (file.py:12)``, naming the deepest frame in the user's file."""
    where = ""
    frames = list(traceback.extract_tb(exc.__traceback__))
    if near is not None:
        # Only the user's own file is worth naming: a call that failed before entering it (a
        # wrong signature) names no line.
        frames = [f for f in frames if Path(f.filename).resolve() == near]
    if frames:
        where = f" ({Path(frames[-1].filename).name}:{frames[-1].lineno})"
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}{': ' + message if message else ''}{where}"


def load_impl(ref: ImplRef) -> Callable[..., Any]:
    """Import the impl's file (once per version of the file) and return its callable."""
    try:
        key = (ref.path, ref.path.stat().st_mtime_ns)
    except OSError as exc:
        raise ImplError(
            f"impl {ref.spelled}: cannot read {ref.path.name}: {exc.strerror}") from None
    module = _MODULES.get(key)
    if module is None:
        digest = hashlib.sha1(str(key).encode()).hexdigest()[:10]
        name = f"gradcheck_lab_impl_{ref.path.stem}_{digest}"
        spec = importlib.util.spec_from_file_location(name, ref.path)
        if spec is None or spec.loader is None:
            raise ImplError(f"impl {ref.spelled}: {ref.path.name} cannot be imported")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        # Like a conftest.py: the impl may import modules that sit beside it.
        sys.path.insert(0, str(ref.path.parent))
        try:
            spec.loader.exec_module(module)
        except BaseException as exc:
            if not raised_by_user_code(exc):
                raise
            sys.modules.pop(name, None)
            raise ImplError(f"impl {ref.spelled}: importing {ref.path.name} raised "
                            f"{describe_exception(exc, ref.path)}") from None
        finally:
            if str(ref.path.parent) in sys.path:
                sys.path.remove(str(ref.path.parent))
        _MODULES[key] = module
    function = getattr(module, ref.name, None)
    if function is None:
        raise ImplError(f"impl {ref.spelled}: {ref.path.name} has no top-level {ref.name!r}")
    if not callable(function):
        raise ImplError(f"impl {ref.spelled}: {ref.name!r} is not callable")
    return function


class FunctionUnderTest:
    """Calls the impl (checked) or the lowered spec on a dict of tensors, in ``dtype`` on
    ``device``.

    An impl may compute at a lower precision than asked, and say so by its output's dtype (a
    float32 result for float64 inputs): that is accepted, and ``returned_dtype`` records it.
    ``fallback``: a dtype to call the impl in when it refuses ``dtype`` inputs (a kernel that
    takes float32 only, called in float64 by finite differences); ``called_in`` then says so.
    """

    def __init__(self, case: Case, dtype: str, device: str, fallback: str | None = None) -> None:
        self.case = case
        self.dtype = dtype
        self.device = device
        self.output_shape = case.program.output_node.shape
        self.fallback = fallback if fallback != dtype else None
        self.called_in = dtype
        self.refused: str | None = None  # why the impl refused ``dtype`` inputs
        self.returned_dtype = dtype
        if case.impl is None:
            self.impl = None
            self.label = "spec lowered to torch"
        else:
            self.impl = case.impl if callable(case.impl) else load_impl(case.impl)
            self.label = f"impl {case.impl_label}"
            if case.module_params:
                self.impl = bound_module(self.impl, case, dtype, device, self.label)
        # The user's file, whose frames an error names (an impl file, or a callable's own).
        self.source = (case.impl.path if isinstance(case.impl, ImplRef)
                       else _source_of(self.impl))
        # Per input, the tensor of the centre's array (pinned by the evaluation that makes it
        # the centre) and of the last other array met, by identity: the unmoved inputs of
        # every finite-difference evaluation are the centre's arrays.
        self._pinned: dict[str, tuple[np.ndarray, Any]] = {}
        self._last: dict[str, tuple[np.ndarray, Any]] = {}
        self._center: _Center | None = None

    def input_tensors(self, values: Mapping[str, np.ndarray],
                      center: bool = False) -> dict[str, Any]:
        """Every input as a tensor without grad (float64, or int64 for integer ones), as
        finite differences call the function: the centre's arrays (``center``: these values
        are the new centre) and the last array met reuse their tensors, so only the moved
        input is converted. The lowered spec reads its inputs; an impl gets copies, so that one
        that writes into its inputs cannot change the next evaluation."""
        import torch

        tensors = {}
        for spec in self.case.inputs:
            array = values[spec.name]
            hit = next((entry[1] for entry in (self._pinned.get(spec.name),
                                               self._last.get(spec.name))
                        if entry is not None and entry[0] is array), None)
            if hit is None:
                hit = torch.tensor(array, device=self.device,
                                   dtype=torch.int64 if spec.is_integer else torch.float64)
                self._last[spec.name] = (array, hit)
            if center:
                self._pinned[spec.name] = (array, hit)
            tensors[spec.name] = hit if self.impl is None else hit.clone()
        return tensors

    def __call__(self, tensors: dict[str, Any], moved: frozenset[str] | None = None) -> Any:
        """The function at ``tensors``. ``moved``, for evaluations without a graph (finite
        differences): the empty set makes this evaluation the centre, kept node by node; a
        set of names says only those inputs differ from the centre's tensors, so that the
        lowered spec evaluates again only the nodes downstream of them (an impl is opaque and
        always called whole)."""
        if self.impl is None:
            return self._lowered(tensors, moved)
        try:
            out = self.called(tensors)
        except ImplError as exc:
            if self.fallback is None or self.called_in != self.dtype:
                raise
            self.called_in, self.refused = self.fallback, str(exc)
            try:
                out = self.called(tensors)
            except ImplError:
                raise exc from None
        self._check(out)
        return out

    def plain(self, tensors: dict[str, Any]) -> Any:
        """The function itself at ``tensors``: the impl's call, or the spec lowered, without
        the checks of ``__call__`` (what one forward of the case costs: the cost unit)."""
        if self.impl is None:
            return lower(self.case.program, tensors, self.dtype, self.device)
        return self.called(tensors)

    def _lowered(self, tensors: dict[str, Any], moved: frozenset[str] | None) -> Any:
        import torch

        program = self.case.program
        if moved is None or torch.is_grad_enabled():
            return lower(program, tensors, self.dtype, self.device)
        if not moved:
            self._center = _Center(program, dict(tensors),
                                   lower_all(program, tensors, self.dtype, self.device))
            return self._center.nodes[program.output]
        center = self._center
        if center is None or not center.holds(tensors, moved):
            return lower(program, tensors, self.dtype, self.device)
        given = {**center.unmoved(moved),
                 **input_values(program, {name: tensors[name] for name in moved})}
        return interpret(program, given, [program.output],
                         torch_form(self.dtype, self.device))[program.output]

    def moved_elements(self, name: str, indices: Any, values: Any) -> Any | None:
        """The function with element ``indices[b]`` of input ``name`` set to ``values[b]``
        and every other input at the centre, one row per b (B, *output shape), without
        evaluating again what a moved element does not reach: the ops that read the input
        are evaluated only where it reaches (their ``moves`` rules), the nodes downstream of
        them through vmap (readers without a rule read B copies of the input there). None:
        the function is an impl (opaque), or no op that reads the input has a rule for it (the
        caller moves the whole input)."""
        if self.impl is None and self._center is not None:
            return self._center.moved_elements(name, indices, values,
                                               torch_form(self.dtype, self.device))
        return None

    def called(self, tensors: dict[str, Any]) -> Any:
        """The impl's own result for ``tensors`` (named outputs joined), unchecked."""
        assert self.impl is not None, "called() is the impl's call: the spec has none"
        path = self.source
        if self.called_in != self.dtype:
            import torch

            target = getattr(torch, self.called_in)
            tensors = {name: t.to(target) if t.is_floating_point() else t
                       for name, t in tensors.items()}
        try:
            out = self.impl(**tensors, **self.case.constants)
        except BaseException as exc:
            if not raised_by_user_code(exc):
                raise
            raise ImplError(f"{self.label} raised {describe_exception(exc, path)}") from None
        return self._packed(out) if self.case.outputs else out

    def _packed(self, out: Any) -> Any:
        """Named outputs, returned as a tuple in the case's order or as a dict, each checked
        and flattened into the one output the oracles see (as the spec's ``pack``)."""
        import torch

        names = [name for name, _ in self.case.outputs]
        if isinstance(out, dict):
            missing = [name for name in names if name not in out]
            if missing or len(out) != len(names):
                raise ImplError(f"{self.label} returned a dict with keys {sorted(out)}; the "
                                f"case's outputs are {names}")
            out = [out[name] for name in names]
        if not isinstance(out, (tuple, list)) or len(out) != len(names):
            raise ImplError(f"{self.label} returned {type(out).__name__}, expected a tuple (or "
                            f"dict) of the {len(names)} outputs {names}")
        for (name, shape), tensor in zip(self.case.outputs, out, strict=True):
            if not isinstance(tensor, torch.Tensor):
                raise ImplError(f"{self.label} returned {type(tensor).__name__} for output "
                                f"{name!r}, expected a tensor of shape {list(shape)}")
            if tuple(tensor.shape) != shape:
                raise ImplError(f"{self.label} returned shape {list(tensor.shape)} for output "
                                f"{name!r}; the spec's has shape {list(shape)}")
        return torch.cat([tensor.reshape(-1) for tensor in out])

    def _check(self, out: Any) -> None:
        import torch

        expected = f"a tensor of shape {list(self.output_shape)}"
        if not isinstance(out, torch.Tensor):
            raise ImplError(f"{self.label} returned {type(out).__name__}, expected {expected}")
        if tuple(out.shape) != self.output_shape:
            raise ImplError(f"{self.label} returned shape {list(out.shape)}; the spec's output "
                            f"has shape {list(self.output_shape)}")
        wanted = getattr(torch, self.dtype)
        if out.dtype != wanted:
            lower = (out.is_floating_point() and not out.is_complex()
                     and torch.finfo(out.dtype).eps >= torch.finfo(wanted).eps)
            if not lower:
                raise ImplError(f"{self.label} returned "
                                f"{str(out.dtype).removeprefix('torch.')} for {self.dtype} "
                                "inputs")
            self.returned_dtype = str(out.dtype).removeprefix("torch.")
        if out.device.type != torch.device(self.device).type:
            raise ImplError(f"{self.label} returned a tensor on {out.device}, "
                            f"expected {self.device}")


@dataclass(frozen=True)
class Subject:
    """The function under test on one device, as the oracles call it: in the case's dtype
    (``checked``, what autograd differentiates) and in float64 (``reference``, what finite
    differences difference; in the case's dtype where the impl refuses float64)."""

    checked: FunctionUnderTest
    reference: FunctionUnderTest

    @classmethod
    def on(cls, case: Case, dtype: str, device: str) -> Subject:
        return cls(FunctionUnderTest(case, dtype, device),
                   FunctionUnderTest(case, "float64", device, fallback=dtype))


class _Center:
    """The lowered spec's every node at one evaluation (finite differences' center): an
    evaluation that moves some inputs reuses the nodes that do not depend on them. Exact, not
    an approximation: those nodes are computed from the same tensors by the same ops."""

    def __init__(self, program: Program, inputs: dict[str, Any], nodes: dict[int, Any]) -> None:
        self.program = program
        self.inputs = inputs
        self.nodes = nodes
        self._unmoved: dict[frozenset[str], dict[int, Any]] = {}

    def holds(self, tensors: Mapping[str, Any], moved: frozenset[str]) -> bool:
        """Whether every input but ``moved`` is the centre's own tensor (the same object:
        finite differences reuse the tensors of unmoved inputs)."""
        return tensors.keys() == self.inputs.keys() and all(
            tensors[name] is tensor for name, tensor in self.inputs.items()
            if name not in moved)

    def unmoved(self, moved: frozenset[str]) -> dict[int, Any]:
        """The centre's nodes that do not depend on the inputs ``moved``."""
        kept = self._unmoved.get(moved)
        if kept is None:
            changing = self.program.depending_on(moved)
            kept = {index: value for index, value in self.nodes.items()
                    if index not in changing}
            self._unmoved[moved] = kept
        return kept

    def moved_elements(self, name: str, indices: Any, values: Any, form: Form) -> Any | None:
        """``FunctionUnderTest.moved_elements`` from these nodes."""
        import torch

        program, source = self.program, self.program.inputs[name]
        if program.output == source:  # the output is the input itself: nothing reads it
            return moved_copies(self.inputs[name], indices, values)
        changing = program.depending_on({name})
        readers: dict[int, Any] = {}  # the readers' values, B of each
        whole_input = False  # some reader is evaluated downstream, from B copies of the input
        for index in self.nodes:
            node = program.nodes[index]
            if source not in node.args:
                continue
            op, params = OPS[node.op], node.param_dict
            # A rule keeps the other arguments at the centre: they must not move too.
            moving = [k for k, arg in enumerate(node.args) if arg in changing]
            rows = None
            if op.moves_rule is not None and len(moving) == 1:
                rows = op.moves_rule(
                    arguments(program, index, self.nodes, form), moving[0], indices, values,
                    self.nodes[index],
                    functools.partial(_applied, form, op, params))
            if rows is None:
                whole_input = True
            else:
                readers[index] = rows
        if whole_input:
            if not readers:
                return None  # nothing to gain: the caller moves the whole input
            readers[source] = moved_copies(self.inputs[name], indices, values)
        if program.output in readers:
            return readers[program.output]
        if not readers:  # the output does not read the input at all
            out = self.nodes[program.output]
            return out.unsqueeze(0).repeat(len(indices), *([1] * out.dim()))
        unmoved = self.unmoved(frozenset({name}))
        order = list(readers)

        def downstream(*rows: Any) -> Any:
            given = {**unmoved, **dict(zip(order, rows, strict=True))}
            return interpret(program, given, [program.output], form)[program.output]

        return torch.func.vmap(downstream)(*(readers[index] for index in order))


def bound_module(factory: Callable[..., Any], case: Case, dtype: str, device: str,
                 label: str) -> Callable[..., Any]:
    """``impl`` gives an nn.Module (``NAME()``, or ``NAME(**constants)`` when the case has
    constants); the result calls it with ``params:`` bound to their inputs through
    torch.func.functional_call, and the other inputs, in the case's order, as its forward's
    arguments. The module is moved to the case's dtype and device once."""
    import torch

    try:
        module = factory(**case.constants)
    except BaseException as exc:
        if not raised_by_user_code(exc):
            raise
        given = f" with the constants {', '.join(case.constants)}" if case.constants else ""
        raise ImplError(f"{label}: building the module{given} raised "
                        f"{describe_exception(exc, _source_of(factory))}") from None
    if not isinstance(module, torch.nn.Module):
        raise ImplError(f"{label} with params: must give an nn.Module, got "
                        f"{type(module).__name__}")
    module = module.to(dtype=getattr(torch, dtype), device=device)
    known = dict(module.named_parameters())
    for parameter in case.module_params:
        if parameter not in known:
            from gradcheck_lab.ops import suggest

            raise ImplError(f"{label}: the module has no parameter {parameter!r}"
                            f"{suggest(parameter, list(known))} (it has "
                            f"{', '.join(known) or 'none'})")
    bound = {input_name: parameter for parameter, input_name in case.module_params.items()}
    order = [spec.name for spec in case.inputs if spec.name not in bound]

    def call(**values: Any) -> Any:
        parameters = {bound[name]: values[name] for name in bound}
        arguments = [values[name] for name in order]
        return torch.func.functional_call(module, parameters, tuple(arguments))

    return call


def _source_of(function: Any) -> Path | None:
    """The file a Python callable was defined in (a custom Function's ``apply`` is torch's:
    its class's file then), or None. Looked up once per callable: the drop-in builds the
    subject at every call, and the lookup reads the file system."""
    owner = getattr(function, "__self__", None)  # Function.apply is bound to its class
    # The lookup needs only the code (its file) and a class owner: cached by those, which
    # keeps no caller's object alive (an instance owner has no source file of its own).
    code = getattr(getattr(function, "__func__", function), "__code__", None)
    owner_class = owner if isinstance(owner, type) else None
    if code is None:
        return _source_uncached(function, owner)
    return _source_cached(code, owner_class, function)


def _source_cached(code: Any, owner_class: type | None, function: Any) -> Path | None:
    key = (code, owner_class)
    if key not in _SOURCES:
        if len(_SOURCES) >= _SOURCES_KEPT:
            _SOURCES.clear()
        _SOURCES[key] = _source_uncached(function, owner_class)
    return _SOURCES[key]


_SOURCES: dict[tuple[Any, type | None], Path | None] = {}
_SOURCES_KEPT = 1024


def _source_uncached(function: Any, owner: Any) -> Path | None:
    import inspect

    for candidate in (function, owner):
        try:
            source = inspect.getsourcefile(candidate) if candidate is not None else None
        except TypeError:
            source = None
        if source and "torch" not in Path(source).parts:
            return Path(source).resolve()
    return None


def lower(program: Program, tensors: dict[str, Any], dtype: str, device: str) -> Any:
    """Evaluate the spec with torch ops (each op's torch form from the op table)."""
    return lower_all(program, tensors, dtype, device)[program.output]


def lower_all(program: Program, tensors: dict[str, Any], dtype: str,
              device: str) -> dict[int, Any]:
    """``lower``, keeping every node's tensor (by node index) the output needs."""
    return interpret(program, input_values(program, tensors), [program.output],
                     torch_form(dtype, device))


def torch_form(dtype: str, device: str) -> Form:
    """Torch tensors of ``dtype`` on ``device``: each op's torch form from the op table."""
    import torch

    def constant(value: Any) -> Any:
        return torch.tensor(float(value), dtype=getattr(torch, dtype), device=device)

    def array(value: np.ndarray) -> Any:
        kind = {"b": torch.bool, "i": torch.int64}.get(value.dtype.kind, getattr(torch, dtype))
        return torch.tensor(value, dtype=kind, device=device)

    def describe(op: Op, exc: BaseException) -> str:
        return f"torch could not evaluate {op.name}(): {describe_exception(exc)}"

    def apply(op: Op, args: Sequence[Any], params: Any) -> Any:
        if op.returns == "real" and op.is_elementwise:
            # sin(t) of an integer tensor is float32 (torch's default dtype) whatever the
            # case's dtype: the case's dtype it is.
            args = [a.to(getattr(torch, dtype)) if torch.is_tensor(a) and not (
                a.is_floating_point()) else a for a in args]
        return op.torch(args, params)

    return Form("torch", constant=constant, apply=apply,
                failures=(RuntimeError, IndexError, ValueError), describe=describe,
                scalar=float, array=array)


def owned(tensor: Any) -> np.ndarray:
    """A float64 numpy copy of a tensor the function under test gave us: never a view (for a
    float64 cpu tensor ``.numpy()`` shares its memory, and a backward may write into what it
    returned later), and zeros for torch's ZeroTensor (what double backward gives for a
    gradient that is structurally zero, which ``.numpy()`` refuses)."""
    import torch

    if tensor._is_zerotensor():
        return np.zeros(tuple(tensor.shape))
    if (tensor.dtype == torch.float64 and tensor.device.type == "cpu" and not tensor.is_neg()
            and not tensor.is_conj()):  # the usual case, without the conversions below
        return np.array(tensor.detach().numpy(), copy=True)
    # A backward may return a lazy negation (the gradient through conj or imag): numpy
    # reads values, not views with pending bits.
    return np.array(tensor.detach().resolve_neg().resolve_conj().to(torch.float64).cpu()
                    .numpy(), copy=True)


def device_available(device: str) -> bool:
    """``cpu``, or a cuda device this machine has."""
    if not device.startswith("cuda"):
        return True
    import torch

    if not torch.cuda.is_available():
        return False
    index = int(device.split(":")[1]) if ":" in device else 0
    return index < torch.cuda.device_count()


@functools.cache
def _blas_pools() -> Any:
    """The process's thread pools, found once: finding them reads the loaded libraries
    (about 0.6 ms, a tenth of a small check). numpy's BLAS is loaded with numpy, before."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


@contextlib.contextmanager
def held_threads(count: int | None) -> Iterator[int]:
    """torch's CPU threads held at ``count`` for the block (None: torch's setting as it is)
    and put back after it, numpy's BLAS on as many (OpenBLAS's idle threads spin, and took a
    second core beside torch's single one); yields the count in force."""
    import torch

    previous = torch.get_num_threads()
    if count is not None and count != previous:
        torch.set_num_threads(count)
    try:
        with _blas_pools().limit(limits=torch.get_num_threads(), user_api="blas"):
            yield torch.get_num_threads()
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def _applied(form: Form, op: Op, params: dict[str, Any], args: list[Any]) -> Any:
    """``op`` on ``args`` in ``form`` (a rule's evaluation of its one moving argument)."""
    return form.apply(op, args, params)

