"""The drop-in's failure: a subclass of torch's own ``GradcheckError`` (itself a
RuntimeError), so that ``except torch.autograd.gradcheck.GradcheckError`` and ``except
gradcheck_lab.GradcheckError`` both catch it. Built on first use, as importing gradcheck_lab
does not import torch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

_CLASS: list[type] = []


def gradcheck_error() -> type[RuntimeError]:
    """The one GradcheckError class (the same object on every call)."""
    if not _CLASS:
        from torch.autograd.gradcheck import GradcheckError as TorchGradcheckError

        class GradcheckError(TorchGradcheckError):
            """A failed check, as torch's GradcheckError is: the message holds the report."""

        GradcheckError.__module__ = "gradcheck_lab"
        GradcheckError.__qualname__ = "GradcheckError"
        _CLASS.append(GradcheckError)
    return _CLASS[0]


def lazy_attributes(module: str) -> Callable[[str], Any]:
    """A module's ``__getattr__`` that gives ``GradcheckError`` on first use (PEP 562), for
    each module that exports it."""

    def attribute(name: str) -> Any:
        if name == "GradcheckError":
            return gradcheck_error()
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return attribute
