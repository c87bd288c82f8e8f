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
    CALLS_PER_CLASS,
    MAX_CALL_ELEMENTS,
    FunctionRecord,
    RecordedCall,
    Recorder,
    add_counts,
    class_named,
    element_count,
    is_function_class,
    merge_calls,
    signature_of,
)

__all__ = ["SUFFIX", "Recording", "RecordingError", "from_bytes", "merge_folder", "read",
           "start_recording", "to_bytes", "write"]

SUFFIX = ".gradcheck-calls"
FORMAT = "gradcheck-lab recorded calls"
VERSION = 1
MAX_FILE_BYTES = 256 * 2**20  # 100,000 elements a call, 3 calls a class: room for 100 classes
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_NESTING = 4


class RecordingError(ValueError):
    """A recording file that cannot be read: the message names the file and the key."""


def start_recording(folder: str) -> None:
    """Record this process's custom Function calls from now on; write them into ``folder``
    at exit (the sitecustomize of ``gradcheck-lab record`` calls this once torch is
    imported)."""
    recorder = Recorder()
    recorder.install()
    atexit.register(lambda: _write_atomically(Path(folder) / f"calls-{os.getpid()}{SUFFIX}",
                                              to_bytes(recorder.records.values(),
                                                       recorder.seconds)))


def write(records: Any, path: Path) -> None:
    """The records' calls to ``path``, as plain values."""
    _write_atomically(path, to_bytes(records))


def to_bytes(records: Any, seconds: float = 0.0) -> bytes:
    """The records' calls as the file's bytes (``seconds``: the time spent recording)."""


    functions, not_sent = [], []
    for record in records:
        if not is_function_class(record.cls):  # a watched function: checked under pytest only
            not_sent.append(f"{record.function}: a function named in "
                            "gradcheck_functions_include is checked without -n only")
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
    return _save({"format": FORMAT, "version": VERSION, "functions": functions,
                  "seconds": float(seconds), "not_sent": not_sent})


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


def merge_folder(folder: Path, path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Every process's calls in ``folder`` as one recording at ``path``, merged as data (no
    Function's module is imported: a script's or one beside it merges as any other); a part
    that cannot be read is a problem line, and the others still merge. The merged entries
    and the problems."""
    merged: dict[tuple[str, str], dict[str, Any]] = {}
    problems: list[str] = []
    seconds = 0.0
    for part in sorted(folder.glob(f"*{SUFFIX}")):
        try:
            document = _document(_bytes_of(part), str(part))
        except RecordingError as exc:  # a process killed while writing its part
            problems.append(str(exc))
            continue
        seconds += document["seconds"]
        problems += document["not_sent"]
        for entry in document["functions"]:
            key = (entry["module"], entry["qualname"])
            mine = merged.setdefault(key, {**entry, "calls": [], "seen": 0, "refused": {}})
            mine["seen"] += entry["seen"]
            add_counts(mine["refused"], entry["refused"])
            merge_calls(mine["calls"], entry["calls"], _call_signature,
                        lambda call: element_count((call["args"], call["kwargs"])),
                        CALLS_PER_CLASS)
    for module, qualname in merged:
        if module == "__main__":
            problems.append(f"{module}.{qualname}: defined in a script run as __main__, which "
                            "no later process can import by that name: move it into a module "
                            "to have it checked")
    _write_atomically(path, _save({"format": FORMAT, "version": VERSION,
                                   "functions": list(merged.values()), "seconds": seconds,
                                   "not_sent": []}))
    return list(merged.values()), problems


def _call_signature(call: dict[str, Any]) -> Any:
    return signature_of(tuple(call["args"]), call["kwargs"])


def _save(document: dict[str, Any]) -> bytes:
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(document, buffer)
    return buffer.getvalue()


def _write_atomically(path: Path, data: bytes) -> None:
    """``data`` to ``path`` through a temporary beside it: a process killed mid-write leaves
    no half file under the final name."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(data)
    os.replace(temporary, path)


@dataclass(frozen=True)
class Recording:
    """What a recording holds: the Functions' calls, the seconds spent recording them, and
    one line for each Function entry that could not be read (the others are)."""

    records: list[FunctionRecord]
    seconds: float
    problems: list[str]


def read(path: Path) -> Recording:
    """The recording at ``path``, its Functions imported by name (the working directory
    first on the import path, as ``python`` would have it); RecordingError names the file
    and key of a problem with the whole file."""
    return from_bytes(_bytes_of(path), str(path))


def _bytes_of(path: Path) -> bytes:
    import stat

    label = str(path)
    try:
        status = path.stat()
        if not stat.S_ISREG(status.st_mode):
            raise RecordingError(f"{label}: document: not a regular file: not read")
        if status.st_size > MAX_FILE_BYTES:
            raise RecordingError(f"{label}: document: file is {status.st_size} bytes (limit "
                                 f"{MAX_FILE_BYTES})")
        return path.read_bytes()
    except OSError as exc:
        raise RecordingError(f"{label}: document: cannot read the file: {exc.strerror}") \
            from None


def from_bytes(data: bytes, label: str) -> Recording:
    """``read`` of bytes already in hand (an xdist worker's), ``label`` naming them."""
    document = _document(data, label)
    records, problems = [], list(document["not_sent"])
    cwd = os.getcwd()
    added = cwd not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        for i, entry in enumerate(document["functions"]):
            try:
                records.append(_record(entry, f"{label}: functions[{i}]"))
            except RecordingError as exc:  # one Function's entry: the others are still read
                problems.append(str(exc))
    finally:
        if added:
            sys.path.remove(cwd)
    return Recording(records, document["seconds"], problems)


def _document(data: bytes, label: str) -> dict[str, Any]:
    """The file's data, every part checked for its shape and size, nothing imported."""
    import io
    import zipfile

    import torch

    try:  # a torch file is a zip: what it unpacks to is bounded before anything is loaded
        unpacked = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(data)).infolist())
    except (zipfile.BadZipFile, ValueError, OSError):
        raise RecordingError(f"{label}: document: not a recording of gradcheck-lab record "
                             "(not a torch file)") from None
    if unpacked > MAX_FILE_BYTES:
        raise RecordingError(f"{label}: document: unpacks to {unpacked} bytes (limit "
                             f"{MAX_FILE_BYTES})")
    try:
        document = torch.load(io.BytesIO(data), weights_only=True)
    except Exception as exc:  # holding more than plain data, or damaged
        raise RecordingError(f"{label}: document: not a recording of gradcheck-lab record "
                             f"({type(exc).__name__})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise RecordingError(f"{label}: format: not a recording of gradcheck-lab record")
    if document.get("version") != VERSION:
        raise RecordingError(f"{label}: version: {document.get('version')!r}, this "
                             f"gradcheck-lab reads version {VERSION}")
    functions, seconds = document.get("functions"), document.get("seconds", 0.0)
    not_sent = document.get("not_sent", [])
    if not isinstance(functions, list) or not isinstance(seconds, float) or not isinstance(
            not_sent, list) or not all(isinstance(line, str) for line in not_sent):
        raise RecordingError(f"{label}: functions: expected a list")
    checked = []
    for i, entry in enumerate(functions):
        _check_entry(entry, f"{label}: functions[{i}]")
        checked.append(entry)
    return {"functions": checked, "seconds": seconds, "not_sent": list(not_sent)}


def _check_entry(entry: Any, where: str) -> None:
    if not isinstance(entry, dict):
        raise RecordingError(f"{where}: expected a mapping")
    for key in ("module", "qualname"):
        value = entry.get(key)
        if not isinstance(value, str) or not _DOTTED.match(value) or len(value) > 300:
            raise RecordingError(f"{where}.{key}: expected a dotted Python name")
    seen, refused = entry.get("seen", 0), entry.get("refused", {})
    if not isinstance(seen, int) or not isinstance(refused, dict) or not all(
            isinstance(k, str) and isinstance(v, int) for k, v in refused.items()):
        raise RecordingError(f"{where}: seen/refused: expected a count and counts by reason")
    entry.setdefault("seen", 0)
    entry.setdefault("refused", {})
    calls = entry.get("calls")
    if not isinstance(calls, list):
        raise RecordingError(f"{where}.calls: expected a list")
    for i, call in enumerate(calls):
        _check_call(call, f"{where}.calls[{i}]")


def _check_call(entry: Any, where: str) -> None:
    import torch

    if not isinstance(entry, dict):
        raise RecordingError(f"{where}: expected a mapping")
    args, kwargs = entry.get("args"), entry.get("kwargs")
    wanted, test = entry.get("wanted"), entry.get("test", "")
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise RecordingError(f"{where}: args and kwargs: expected a list and a mapping")
    problem = _plain_problem((args, kwargs))
    if problem:
        raise RecordingError(f"{where}.args: {problem}")
    elements = element_count((args, kwargs))
    if elements > MAX_CALL_ELEMENTS:
        raise RecordingError(f"{where}.args: {elements} tensor elements (limit "
                             f"{MAX_CALL_ELEMENTS})")
    if not isinstance(wanted, list) or len(set(map(repr, wanted))) != len(wanted) or not all(
            isinstance(p, int) and not isinstance(p, bool) and 0 <= p < len(args)
            and isinstance(args[p], torch.Tensor)
            and (args[p].is_floating_point() or args[p].is_complex()) for p in wanted):
        raise RecordingError(f"{where}.wanted: expected distinct positions of floating-point "
                             "tensors among args")
    if not isinstance(test, str):
        raise RecordingError(f"{where}.test: expected a string")
    entry.setdefault("test", "")


def _record(entry: dict[str, Any], where: str) -> FunctionRecord:
    """A checked entry with its Function imported by name."""
    module, qualname = entry["module"], entry["qualname"]
    if module == "__main__" or module.endswith(".__main__"):
        raise RecordingError(f"{where}: {module}.{qualname}: defined in a script run as "
                             "__main__: not importable by name (move it into a module)")
    cls = class_named(module, qualname)
    # A Function subclass only: its calls go through apply to its own forward. A plain
    # function named by a file could be anything importable (torch.save of a path).
    if cls is None or not is_function_class(cls):
        raise RecordingError(f"{where}: {module}.{qualname} is not an importable "
                             "torch.autograd.Function subclass here")
    record = FunctionRecord(f"{module}.{qualname}", cls)
    record.seen, record.refused = entry["seen"], dict(entry["refused"])
    for call in entry["calls"]:
        values = tuple(call["args"])
        record.calls.append(RecordedCall(
            record.function, cls, values, call["kwargs"], tuple(call["wanted"]),
            element_count((values, call["kwargs"])), signature_of(values, call["kwargs"]),
            call["test"]))
    return record
