"""Recorded custom Function calls as a file: what ``gradcheck-lab record -- COMMAND`` writes and
``gradcheck-lab run FILE.gradcheck-calls`` checks.

The file is read as data, never as code: ``torch.load(weights_only=True)`` of plain values
(tensors, numbers, strings, lists, dicts), each checked for its shape before use; a Function
is named by module and class and found again by importing that module, as an ``impl`` file
runs your own code (review a recording from elsewhere as you would an impl). Calls whose
non-tensor arguments are not plain values (a module, a callable) are not written, and are
counted under their class.
"""

from __future__ import annotations

import atexit
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradcheck_lab.doors.functions.recorder import (
    FunctionRecord,
    RecordedCall,
    Recorder,
    class_named,
    element_count,
    is_function_class,
    signature_of,
)

__all__ = ["SUFFIX", "Recording", "RecordingError", "from_bytes", "merge_folder", "read",
           "record_once_torch_loads", "to_bytes", "write"]

SUFFIX = ".gradcheck-calls"
FORMAT = "gradcheck-lab recorded calls"
VERSION = 1
MAX_FILE_BYTES = 256 * 2**20  # 100,000 elements a call, 3 calls a class: room for 100 classes
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NESTING = 4


class RecordingError(ValueError):
    """A recording file that cannot be read: the message names the file and the key."""


def record_once_torch_loads(folder: str) -> None:
    """Start recording in this process when torch is imported (now, if it already is); write
    the calls into ``folder`` at exit."""
    if "torch" in sys.modules:
        _start(folder)
        return
    sys.meta_path.insert(0, _AfterTorch(folder))


class _AfterTorch:
    """A meta path finder that lets torch import as usual, then starts the recorder."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "torch":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        loader, folder = spec.loader, self.folder
        execute = loader.exec_module

        def exec_module(module: Any) -> None:
            execute(module)
            _start(folder)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _start(folder: str) -> None:
    recorder = Recorder()
    recorder.install()
    atexit.register(lambda: (Path(folder) / f"calls-{os.getpid()}{SUFFIX}").write_bytes(
        to_bytes(recorder.records.values(), recorder.seconds)))


def write(records: Any, path: Path) -> None:
    """The records' calls to ``path``, as plain values."""
    path.write_bytes(to_bytes(records))


def to_bytes(records: Any, seconds: float = 0.0) -> bytes:
    """The records' calls as the file's bytes (``seconds``: the time spent recording)."""
    import io

    import torch

    functions = []
    for record in records:
        if not is_function_class(record.cls):  # a watched function: checked under pytest only
            continue
        calls = []
        for call in record.calls:
            problem = _plain_problem((call.args, call.kwargs))
            if problem:
                record.refused[f"not written: {problem}"] = \
                    record.refused.get(f"not written: {problem}", 0) + 1
                continue
            calls.append({"args": list(call.args), "kwargs": dict(call.kwargs),
                          "wanted": list(call.wanted), "test": call.test})
        functions.append({"module": record.cls.__module__, "qualname": record.cls.__qualname__,
                          "seen": record.seen, "refused": dict(record.refused), "calls": calls})
    buffer = io.BytesIO()
    torch.save({"format": FORMAT, "version": VERSION, "functions": functions,
                "seconds": float(seconds)}, buffer)
    return buffer.getvalue()


def _plain_problem(value: Any, depth: int = 0) -> str:
    """Why ``value`` is not plain data the file can hold ('' when it is)."""
    import torch

    if isinstance(value, torch.Tensor):
        return ""
    if isinstance(value, (bool, int, float, complex, str, type(None), torch.dtype)):
        return ""
    if isinstance(value, (list, tuple)) and depth < _NESTING:
        return next((p for p in (_plain_problem(v, depth + 1) for v in value) if p), "")
    if isinstance(value, dict) and depth < _NESTING:
        if not all(isinstance(k, str) for k in value):
            return "a mapping with keys that are not strings"
        return next((p for p in (_plain_problem(v, depth + 1) for v in value.values()) if p),
                    "")
    return f"an argument of type {type(value).__name__}"


def merge_folder(folder: Path, path: Path) -> list[FunctionRecord]:
    """Every process's calls in ``folder`` as one recording at ``path``."""
    merged = Recorder()
    for part in sorted(folder.glob(f"*{SUFFIX}")):
        merged.add(read(part).records)
    write(merged.records.values(), path)
    return list(merged.records.values())


@dataclass(frozen=True)
class Recording:
    """What a recording holds: the Functions' calls, the seconds spent recording them, and
    one line for each Function entry that could not be read (the others are)."""

    records: list[FunctionRecord]
    seconds: float
    problems: list[str]


def read(path: Path) -> Recording:
    """The recording at ``path`` and the seconds spent recording it; RecordingError names the
    file and key of any problem."""
    import stat

    label = str(path)
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            raise RecordingError(f"{label}: document: not a regular file: not read")
        if status.st_size > MAX_FILE_BYTES:
            raise RecordingError(f"{label}: document: file is {status.st_size} bytes (limit "
                                 f"{MAX_FILE_BYTES})")
        data = path.read_bytes()
    except OSError as exc:
        raise RecordingError(f"{label}: document: cannot read the file: {exc.strerror}") \
            from None
    return from_bytes(data, label)


def from_bytes(data: bytes, label: str) -> Recording:
    """``read`` of bytes already in hand (an xdist worker's), ``label`` naming them."""
    import io

    import torch

    try:
        document = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # not a torch file, or one holding more than plain data
        raise RecordingError(f"{label}: document: not a recording of gradcheck-lab record "
                             f"({type(exc).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise RecordingError(f"{label}: format: not a recording of gradcheck-lab record")
    if document.get("version") != VERSION:
        raise RecordingError(f"{label}: version: {document.get('version')!r}, this "
                             f"gradcheck-lab reads version {VERSION}")
    functions, seconds = document.get("functions"), document.get("seconds", 0.0)
    if not isinstance(functions, list) or not isinstance(seconds, float):
        raise RecordingError(f"{label}: functions: expected a list")
    records, problems = [], []
    for i, entry in enumerate(functions):
        try:
            records.append(_record(entry, f"{label}: functions[{i}]"))
        except RecordingError as exc:  # one Function's entry: the others are still read
            problems.append(str(exc))
    return Recording(records, seconds, problems)


def _record(entry: Any, where: str) -> FunctionRecord:
    if not isinstance(entry, dict):
        raise RecordingError(f"{where}: expected a mapping")
    module, qualname = entry.get("module"), entry.get("qualname")
    for key, value in (("module", module), ("qualname", qualname)):
        if not isinstance(value, str) or not _DOTTED.match(value) or len(value) > 300:
            raise RecordingError(f"{where}.{key}: expected a dotted Python name")
    cls = class_named(module, qualname)
    # A Function subclass only: its calls go through apply to its own forward. A plain
    # function named by a file could be anything importable (torch.save of a path).
    if cls is None or not is_function_class(cls):
        raise RecordingError(f"{where}: {module}.{qualname} is not an importable "
                             "torch.autograd.Function subclass here")
    record = FunctionRecord(f"{module}.{qualname}", cls)
    seen, refused = entry.get("seen", 0), entry.get("refused", {})
    if not isinstance(seen, int) or not isinstance(refused, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in refused.items()):
        raise RecordingError(f"{where}: seen/refused: expected a count and counts by reason")
    record.seen, record.refused = seen, dict(refused)
    calls = entry.get("calls")
    if not isinstance(calls, list):
        raise RecordingError(f"{where}.calls: expected a list")
    for i, call in enumerate(calls):
        record.calls.append(_call(call, record, f"{where}.calls[{i}]"))
    return record


def _call(entry: Any, record: FunctionRecord, where: str) -> RecordedCall:
    if not isinstance(entry, dict):
        raise RecordingError(f"{where}: expected a mapping")
    args, kwargs = entry.get("args"), entry.get("kwargs")
    wanted, test = entry.get("wanted"), entry.get("test", "")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise RecordingError(f"{where}: args and kwargs: expected a list and a mapping")
    problem = _plain_problem((args, kwargs))
    if problem:
        raise RecordingError(f"{where}.args: {problem}")
    if not isinstance(wanted, list) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p < len(args)
            for p in wanted):
        raise RecordingError(f"{where}.wanted: expected positions of args")
    if not isinstance(test, str):
        raise RecordingError(f"{where}.test: expected a string")
    import torch

    for position in wanted:
        if not isinstance(args[position], torch.Tensor):
            raise RecordingError(f"{where}.wanted: args[{position}] is not a tensor")
    elements = element_count((args, kwargs))
    values = tuple(args)
    return RecordedCall(record.function, record.cls, values, kwargs, tuple(wanted), elements,
                        signature_of(values, kwargs), test)
