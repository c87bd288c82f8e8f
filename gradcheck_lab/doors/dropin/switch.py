"""Route every ``torch.autograd.gradcheck`` and ``gradgradcheck`` call of a process through
the drop-in, whatever the import style, with no caller edited.

``torch.autograd.gradcheck``, the ``torch.autograd.gradcheck`` module's own names (what
``from torch.autograd.gradcheck import gradcheck`` reads) and every name an already imported
module bound to torch's functions (``from torch.autograd import gradcheck`` at the top of a
test file, an alias) are pointed at the drop-in; ``rebind`` repeats the sweep for modules
imported later (the pytest flag runs it after collection and for each test's module).
``mode="compare"`` also runs torch's own function on every call, for the session summary's
time and disagreements; torch's verdict is never the one returned.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

from gradcheck_lab.doors.dropin import check as dropin_check

KINDS = ("gradcheck", "gradgradcheck")
MODES = ("check", "compare")
_TORCH_MODULE = "torch.autograd.gradcheck"
# torch's functions, as found before the first install.
_ORIGINAL: dict[str, Callable[..., Any]] = {}
# Every name rebind changed, (namespace, name, torch's function): what uninstall puts back
# (and nothing else: a name the caller bound to gradcheck_lab's own stays).
_REBOUND: list[tuple[dict[str, Any], str, Callable[..., Any]]] = []
FIRST_DEFAULTS = dict(dropin_check.DEFAULTS)  # what uninstall puts back


def install(mode: str = "check", *, memory: int | None = None,
            seconds: float | None = None) -> None:
    """Switch this process's gradcheck calls to the drop-in. ``memory`` (bytes) and
    ``seconds`` bound each check (the defaults of ``gradcheck_lab.settings``; 0: none)."""
    import torch

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    module = sys.modules[_TORCH_MODULE]
    if not _ORIGINAL:
        _ORIGINAL.update({kind: getattr(module, kind) for kind in KINDS})
    for kind in KINDS:
        setattr(module, kind, _ours(kind))
        setattr(torch.autograd, kind, _ours(kind))
    if memory is not None:
        dropin_check.DEFAULTS["memory"] = memory or None
    if seconds is not None:
        dropin_check.DEFAULTS["seconds"] = seconds or None
    dropin_check.COMPARE[:] = [_run_torch] if mode == "compare" else []
    rebind()


def uninstall() -> None:
    """Put torch's functions back wherever ``install`` and ``rebind`` replaced them."""
    import torch

    if not _ORIGINAL:
        return
    module = sys.modules[_TORCH_MODULE]
    for kind in KINDS:
        setattr(module, kind, _ORIGINAL[kind])
        setattr(torch.autograd, kind, _ORIGINAL[kind])
    for namespace, key, original in _REBOUND:
        if any(namespace.get(key) is _ours(kind) for kind in KINDS):
            namespace[key] = original
    _REBOUND.clear()
    dropin_check.COMPARE.clear()
    dropin_check.DEFAULTS.update(FIRST_DEFAULTS)


def installed() -> bool:
    """Whether torch's gradcheck is the drop-in now."""
    module = sys.modules.get(_TORCH_MODULE)
    return module is not None and getattr(module, "gradcheck", None) is _ours("gradcheck")


@contextlib.contextmanager
def switched(mode: str = "check", **budgets: Any) -> Iterator[None]:
    """``install`` for a ``with`` block; after it, things are as they were before it (torch's
    functions, or an outer ``switched`` or ``install`` still in place, with its settings)."""
    was = installed()
    saved = dict(dropin_check.DEFAULTS), list(dropin_check.COMPARE)
    install(mode, **budgets)
    try:
        yield
    finally:
        if not was:
            uninstall()
        dropin_check.DEFAULTS.update(saved[0])
        dropin_check.COMPARE[:] = saved[1]


def rebind(modules: list[Any] | None = None) -> int:
    """Point names bound to torch's functions at the drop-in in ``modules`` (default: every
    imported module); how many names were changed."""
    if not _ORIGINAL or not installed():
        return 0
    replacements = {id(_ORIGINAL[kind]): kind for kind in KINDS}
    changed = 0
    for module in list(sys.modules.values()) if modules is None else modules:
        namespace = getattr(module, "__dict__", None)
        if not isinstance(namespace, dict):
            continue
        try:
            hits = [key for key, value in namespace.items() if id(value) in replacements
                    and callable(value)]
        except RuntimeError:  # a module whose namespace changes while it is read (a thread)
            continue
        for key in hits:
            original = namespace[key]
            namespace[key] = _ours(replacements[id(original)])
            _REBOUND.append((namespace, key, original))
            changed += 1
    return changed


def _ours(kind: str) -> Callable[..., Any]:
    return getattr(dropin_check, kind)


def _run_torch(kind: str, func: Callable[..., Any], inputs: Any,
               keywords: dict[str, Any]) -> tuple[str, float]:
    """torch's own verdict and time on the same call (compare mode), with torch's functions
    in place while it runs (its gradgradcheck calls gradcheck by its module's name)."""
    module = sys.modules[_TORCH_MODULE]
    saved = {k: getattr(module, k) for k in KINDS}
    started = time.perf_counter()
    try:
        for k in KINDS:
            setattr(module, k, _ORIGINAL[k])
        verdict = "pass" if _ORIGINAL[kind](func, inputs, **{
            **keywords, "raise_exception": False}) else "fail"
    except Exception:  # torch raises where the drop-in refuses (or the function fails)
        verdict = "fail"
    finally:
        for k in KINDS:
            setattr(module, k, saved[k])
    return verdict, time.perf_counter() - started
