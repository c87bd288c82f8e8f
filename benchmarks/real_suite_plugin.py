"""A pytest plugin for ``benchmarks/real_suites.py``: every ``torch.autograd.gradcheck`` and
``gradgradcheck`` call a third-party suite makes runs twice, through torch's own function and
through gradcheck-lab's drop-in, and each call is written as one JSON line to the file named
by ``$GRADCHECK_LAB_SUITE_OUT``: the test, both verdicts, how gradcheck-lab checked it (three
oracles, two, or an internal error), and both times (wall and CPU, one thread).

The suite itself sees torch's verdict, so it runs as it always does; nothing of it is edited.
Loaded with ``-p real_suite_plugin`` and this folder on PYTHONPATH.
"""

from __future__ import annotations

import importlib
import json
import os
import time
from collections.abc import Callable
from typing import Any

import torch

import gradcheck_lab
from gradcheck_lab.doors import dropin

_OUT = os.environ.get("GRADCHECK_LAB_SUITE_OUT", "suite_calls.jsonl")
_TORCH_MODULE = importlib.import_module("torch.autograd.gradcheck")
_TORCH = {name: getattr(_TORCH_MODULE, name) for name in ("gradcheck", "gradgradcheck")}


def _run(function: Callable[..., Any], args: tuple[Any, ...],
         kwargs: dict[str, Any]) -> tuple[str, BaseException | None, float, float]:
    """(verdict, the exception, wall seconds, CPU seconds): "pass", "fail" (a GradcheckError
    or False) or "raised" (any other exception)."""
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        verdict, error = ("pass" if function(*args, **kwargs) else "fail"), None
    except Exception as exc:
        verdict, error = ("fail" if type(exc).__name__ == "GradcheckError" else "raised"), exc
    return verdict, error, time.perf_counter() - wall, time.process_time() - cpu


def _record(kind: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[str, Any]:
    torch_run = _run(_TORCH[kind], args, kwargs)
    before = len(dropin.CALLS)
    ours = _run(getattr(gradcheck_lab, kind), args, kwargs)
    call = dropin.CALLS[-1] if len(dropin.CALLS) > before else None
    how = "error" if ours[0] == "raised" else f"{call.oracles} oracles" if call else "?"
    line = {
        "test": os.environ.get("PYTEST_CURRENT_TEST", "").split(" ")[0], "kind": kind,
        "fast_mode": bool(kwargs.get("fast_mode", False)),
        "torch": torch_run[0], "lab": ours[0], "how": how,
        "missing": call.missing if call else None,
        "torch_error": _text(torch_run[1]), "lab_error": _text(ours[1]),
        "torch_s": torch_run[2], "lab_s": ours[2], "torch_cpu": torch_run[3],
        "lab_cpu": ours[3],
    }
    if torch_run[0] != ours[0]:  # kept for a standalone repro: the call's tensors, as given
        line["inputs"] = _saved(args, kwargs)
    with open(_OUT, "a", encoding="utf-8") as out:
        out.write(json.dumps(line) + "\n")
    return torch_run[0], torch_run[1]


_saved_count = [0]


def _saved(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    inputs = args[1] if len(args) > 1 else kwargs.get("inputs")
    tensors = [t.detach().clone() for t in (inputs if isinstance(inputs, (tuple, list))
                                           else [inputs]) if isinstance(t, torch.Tensor)]
    _saved_count[0] += 1
    path = f"{_OUT}.{_saved_count[0]}.pt"
    try:
        torch.save(tensors, path)
    except Exception:  # an unpicklable subclass: no repro file, the line says so
        return None
    return path


def _text(error: BaseException | None, limit: int = 4000) -> str | None:
    return None if error is None else f"{type(error).__name__}: {error}"[:limit]


def _wrapped(kind: str) -> Callable[..., bool]:
    def gradcheck(*args: Any, **kwargs: Any) -> bool:
        verdict, error = _record(kind, args, kwargs)
        if error is not None:
            raise error
        return verdict == "pass"

    return gradcheck


def pytest_configure(config: Any) -> None:
    torch.set_num_threads(1)
    for kind in _TORCH:
        setattr(_TORCH_MODULE, kind, _wrapped(kind))
        setattr(torch.autograd, kind, _wrapped(kind))
