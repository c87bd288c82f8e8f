"""Record calls of every custom ``torch.autograd.Function`` while other code runs unchanged.

``Function.apply`` is wrapped for the recording's span: each call of a subclass defined
outside torch is looked at, and a few distinct calls per class are kept, their tensors copied
(detached clones) before the forward runs, so that what the caller's code does afterwards,
in-place updates included, changes nothing recorded, and nothing recorded changes what the
caller sees. Small calls are preferred: a smaller distinct call replaces the largest kept.
Calls the check could not replay are not kept, and the reason is counted per class: tensors
under a dispatch mode or a functorch transform (the drop-in's own trace, vmap), tensor
subclasses, sparse or meta tensors.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

# Calls kept per Function class, and the elements one call's tensors may hold (a float64
# copy of 100,000 elements is 800 KB; the check of a larger call is network-scale).
CALLS_PER_CLASS = 3
MAX_CALL_ELEMENTS = 100_000
MAX_CLASSES = 1_000
MAX_SIGNATURES = 10_000  # distinct calls looked at per class; later ones are not
# Functions of these packages are torch's own machinery (checkpointing, DDP) or ours.
_NOT_RECORDED = ("torch", "functorch", "gradcheck_lab")
_CONSTANTS = (int, float, bool, complex, str, bytes, type(None), type(Ellipsis), slice)


@dataclass(eq=False)  # compared by identity: its tensors have no truth value
class RecordedCall:
    """One call of a Function's ``apply``: what to replay it with."""

    function: str  # module.QualName of the class
    cls: type
    args: tuple[Any, ...]  # tensors copied, constants as given
    kwargs: dict[str, Any]
    wanted: tuple[int, ...]  # positions of the tensors that required grad at the call
    elements: int
    signature: Any  # shapes, dtypes and constants: what tells two calls apart
    test: str = ""  # the pytest test that made the call


@dataclass(eq=False)
class FunctionRecord:
    """A Function class and what the recording kept of it."""

    function: str
    cls: type
    calls: list[RecordedCall] = field(default_factory=list)
    seen: int = 0  # calls made, kept or not
    refused: dict[str, int] = field(default_factory=dict)  # why calls were not kept
    signatures: set[Any] = field(default_factory=set)  # of every call looked at


class Recorder:
    """Records ``Function.apply`` calls between ``install()`` and ``uninstall()``."""

    def __init__(self, calls_per_class: int = CALLS_PER_CLASS,
                 max_call_elements: int = MAX_CALL_ELEMENTS) -> None:
        self.calls_per_class = calls_per_class
        self.max_call_elements = max_call_elements
        self.records: dict[type, FunctionRecord] = {}
        self.seconds = 0.0  # spent recording: what the flag adds to the suite's own run
        self._original: Any = None
        self._undo: list[Callable[[], None]] = []  # of watch()

    def install(self) -> None:
        import torch

        function_class = torch.autograd.Function
        original = function_class.__dict__["apply"]
        self._original = original
        recorder = self

        def apply(cls: type, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            kept = recorder.observe(cls, args, kwargs)
            recorder.seconds += time.perf_counter() - started
            if kept is None:
                return original.__func__(cls, *args, **kwargs)
            try:
                return original.__func__(cls, *args, **kwargs)
            except BaseException:  # a call the test expects to raise is not one to check
                recorder.forget(cls, kept)
                raise

        # Patched while recording (uninstall puts torch's own back): a classmethod in a method.
        function_class.apply = classmethod(apply)  # type: ignore[method-assign,assignment]  # patch

    def watch(self, names: list[str]) -> None:
        """Also record calls of the functions and nn.Module subclasses ``names`` (dotted);
        WatchError names one that is neither."""
        from gradcheck_lab.doors.functions.watched import watch

        def observe(key: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            started = time.perf_counter()
            kept = self.observe(key, args, kwargs, watched=True)
            self.seconds += time.perf_counter() - started
            return kept

        for name in names:
            self._undo += watch(name, observe, self.forget)

    def uninstall(self) -> None:
        import torch

        if self._original is not None:
            # torch's own apply back in place of the patch.
            torch.autograd.Function.apply = self._original  # type: ignore[method-assign]  # undo
            self._original = None
        while self._undo:
            self._undo.pop()()

    def forget(self, cls: Any, call: RecordedCall) -> None:
        """Drop a kept call whose forward raised (its signature open again)."""
        record = self.records.get(cls)
        if record is not None:
            record.calls[:] = [kept for kept in record.calls if kept is not call]
            record.signatures.discard(call.signature)

    def observe(self, cls: Any, args: tuple[Any, ...], kwargs: dict[str, Any],
                watched: bool = False) -> RecordedCall | None:
        """Keep this call of ``cls`` (a Function subclass, or a watched function) if it is new
        and within the budgets, and return it (None when not kept); never raises."""
        record = self.records.get(cls)
        if record is None:
            module = getattr(cls, "__module__", "") or ""
            if (module.split(".")[0] in _NOT_RECORDED and not watched) or \
                    len(self.records) >= MAX_CLASSES:
                return None
            record = self.records[cls] = FunctionRecord(qualified_name(cls), cls)
        record.seen += 1
        import torch

        # The recorder's own torch calls (attribute reads, isfinite, clone) stay out of a
        # test's TorchFunctionMode: a test that counts the ops a Function runs sees its own.
        try:
            with torch._C.DisableTorchFunction():
                signature = signature_of(args, kwargs)
                if signature in record.signatures or len(record.signatures) >= MAX_SIGNATURES:
                    return None  # most calls repeat one already looked at
                record.signatures.add(signature)
                return self._keep(record, args, kwargs, signature)
        except Exception as exc:  # recording must never change what the caller's code sees
            _count(record, f"not copied: {type(exc).__name__}: {exc}"[:120])
            return None

    def _keep(self, record: FunctionRecord, args: tuple[Any, ...], kwargs: dict[str, Any],
              signature: Any) -> RecordedCall | None:
        refusal = _unreplayable(args, kwargs)
        if refusal:
            _count(record, refusal)
            return None
        elements = element_count((args, kwargs))
        if elements > self.max_call_elements:
            _count(record, f"over {self.max_call_elements:,} elements")
            return None
        kept = record.calls
        if len(kept) >= self.calls_per_class:
            largest = max(kept, key=lambda call: call.elements)
            if elements >= largest.elements:
                return None
            kept[:] = [call for call in kept if call is not largest]
        import torch

        if not all(bool(torch.isfinite(t).all()) for t in _tensors((args, kwargs))
                   if t.is_floating_point() or t.is_complex()):
            # -inf for masked entries: finite differences cannot step there, and a call of
            # finite values checks the same backward (so the signature stays open for one).
            _count(record, "a tensor holds inf or NaN")
            record.signatures.discard(signature)
            return None
        from gradcheck_lab.doors.dropin.calls import current_test

        wanted = tuple(i for i, a in enumerate(args)
                       if isinstance(a, torch.Tensor) and a.requires_grad)
        call = RecordedCall(record.function, record.cls, _copied(args), _copied(kwargs),
                            wanted, elements, signature, current_test())
        kept.append(call)
        kept.sort(key=lambda call: call.elements)
        return call

    def add(self, records: Any) -> None:
        """Another process's records (an xdist worker's, a recorded command's) merged in: the
        counts added, each class's smallest distinct calls kept within the budget."""
        for record in records:
            mine = self.records.setdefault(record.cls,
                                           FunctionRecord(record.function, record.cls))
            mine.seen += record.seen
            add_counts(mine.refused, record.refused)
            merge_calls(mine.calls, record.calls, lambda call: call.signature,
                        lambda call: call.elements, self.calls_per_class)


def add_counts(counts: dict[str, int], more: dict[str, int]) -> None:
    """``more``'s counts by reason added into ``counts``."""
    for reason, count in more.items():
        counts[reason] = counts.get(reason, 0) + count


def merge_calls(kept: list[Any], added: Iterable[Any], signature: Callable[[Any], Any],
                size: Callable[[Any], int], cap: int) -> None:
    """``added`` calls of a signature not kept yet joined to ``kept``, then the ``cap``
    smallest kept: what merging two recordings of one Function keeps (records or, in a file
    merged without importing, its plain entries)."""
    known = {signature(call) for call in kept}
    kept += [call for call in added if signature(call) not in known]
    kept.sort(key=size)
    del kept[cap:]


def class_named(module: str, qualname: str) -> Any:
    """The class (or function) ``qualname`` of ``module``, imported; None where it is not
    found."""
    import importlib

    try:
        found: Any = importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (Exception, SystemExit):  # not found again by its name; a module that exits
        return None
    return found if isinstance(found, type) or inspect.isfunction(found) else None


def qualified_name(cls: Any) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def is_function_class(key: Any) -> bool:
    """Whether a record's key is a torch.autograd.Function subclass (else a watched callable:
    a function, or a module class's forward)."""
    import torch

    return isinstance(key, type) and issubclass(key, torch.autograd.Function)


def entry_point(key: Any) -> Callable[..., Any]:
    """What a recorded call is replayed through: a Function's ``apply``, or the callable."""
    return key.apply if is_function_class(key) else key


def entry_name(key: Any) -> str:
    """``mylib.ops.Cube.apply``, ``mylib.ops.fused_gelu``, ``mylib.nn.Block.forward``."""
    return f"{qualified_name(key)}.apply" if is_function_class(key) else qualified_name(key)


def source_location(cls: type) -> tuple[str, int]:
    """The file and 0-based line of the class's definition ('' and 0 where unknown)."""
    try:
        return inspect.getsourcefile(cls) or "", inspect.getsourcelines(cls)[1] - 1
    except (OSError, TypeError):
        return "", 0


def _count(record: FunctionRecord, reason: str) -> None:
    record.refused[reason] = record.refused.get(reason, 0) + 1


def _tensors(value: Any, depth: int = 0) -> Iterator[Any]:
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)) and depth < 4:
        for item in value:
            yield from _tensors(item, depth + 1)
    elif isinstance(value, dict) and depth < 4:
        for item in value.values():
            yield from _tensors(item, depth + 1)


def element_count(value: Any) -> int:
    """Elements of every tensor in ``value`` (arguments, nested up to 4 deep)."""
    return sum(t.numel() for t in _tensors(value))


def _unreplayable(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """Why a call cannot be replayed from copies ('' when it can)."""
    import torch
    from torch.utils._python_dispatch import _get_current_dispatch_mode

    if _get_current_dispatch_mode() is not None:
        return "called under a dispatch mode (a trace)"
    if torch._C._are_functorch_transforms_active():
        return "called under a functorch transform (vmap, grad)"
    for tensor in _tensors((args, kwargs)):
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
            return f"a tensor subclass ({type(tensor).__name__})"
        if tensor.layout != torch.strided or tensor.device.type == "meta":
            return f"a {tensor.layout} tensor on {tensor.device.type}"
        if tensor.is_cuda and torch.cuda.is_current_stream_capturing():
            return "called during CUDA graph capture"  # a copy or a check would break it
    return ""


def signature_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """What tells two calls apart: tensors by shape, dtype and requires_grad, constants by
    value, anything else by type (a hashable tuple: looked up on every call)."""
    import torch

    def key(value: Any, depth: int = 0) -> Any:
        if isinstance(value, torch.Tensor):
            return (value.shape, value.dtype, value.requires_grad)
        if isinstance(value, (list, tuple)) and depth < 4:
            return tuple(key(v, depth + 1) for v in value[:64])
        if isinstance(value, _CONSTANTS):
            return (type(value), value) if not isinstance(value, slice) else repr(value)
        return type(value)

    return key(args), tuple((name, key(v)) for name, v in sorted(kwargs.items()))


class Weak:
    """An argument held weakly (a config object, a callable): the recording keeps nothing
    alive that the suite would free; a check whose argument is gone is a skip."""

    def __init__(self, value: Any) -> None:
        import weakref

        self.ref = weakref.ref(value)
        self.kind = type(value).__name__


def _copied(value: Any) -> Any:
    """Tensors as detached clones (their requires_grad kept), containers rebuilt, constants
    as given, a module deep-copied (its parameters as they were at the call), any other
    object held weakly (``Weak``); a TypeError for one that can be neither."""
    import copy

    import torch

    if isinstance(value, torch.Tensor):
        return value.detach().clone().requires_grad_(value.requires_grad)
    if isinstance(value, tuple):
        return tuple(_copied(v) for v in value)
    if isinstance(value, list):
        return [_copied(v) for v in value]
    if isinstance(value, dict):
        return {k: _copied(v) for k, v in value.items()}
    if isinstance(value, (*_CONSTANTS, torch.dtype, torch.device, torch.Size)):
        return value
    if isinstance(value, torch.nn.Module):
        with torch.no_grad():
            return copy.deepcopy(value)
    try:
        return Weak(value)
    except TypeError:
        raise TypeError(f"an argument of type {type(value).__name__} can be neither copied "
                        "nor held weakly") from None
