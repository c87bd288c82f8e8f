"""gradcheck-lab: verify gradients three ways (symbolic, autograd, finite differences).

The Python API sits next to the YAML route: ``check(...)`` for a case written in Python,
``run_file(path)`` for a case file. Both return the Result objects the CLI reports.
``gradcheck``/``gradgradcheck`` take torch.autograd's signatures, with the spec traced;
``gradcheck_lab.dropin.install()`` (or ``pytest --gradcheck-dropin``) routes torch's own to them;
``pytest --gradcheck-functions`` checks every custom Function a suite calls, and ``exclude``
declares one whose backward is not meant to be its forward's derivative.
Importing this package imports neither torch nor sympy, nor any of its own modules until a
name is first used (PEP 562): the command line's entry point comes up in milliseconds, so
that a Ctrl-C right after the start is answered as one, not with a traceback.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gradcheck_lab.version import __version__

if TYPE_CHECKING:
    # Ours is a subclass of torch's, built on first use (doors.dropin.error): the checker sees
    # the class it subclasses.
    from torch.autograd.gradcheck import GradcheckError

    from gradcheck_lab import dropin
    from gradcheck_lab.doors.api import assert_gradients, check, run_file
    from gradcheck_lab.doors.dropin import gradcheck, gradgradcheck
    from gradcheck_lab.doors.functions import exclude
    from gradcheck_lab.errors import BudgetError, CaseError, GradcheckLabError, ImplError
    from gradcheck_lab.results import Mismatch, Result

__all__ = ["BudgetError", "CaseError", "GradcheckError", "GradcheckLabError", "ImplError",
           "Mismatch", "Result", "__version__", "assert_gradients", "check", "dropin", "exclude",
           "gradcheck",
           "gradgradcheck", "run_file"]

# Each public name and the module that defines it, imported on first use.
_HOMES = {
    "assert_gradients": "gradcheck_lab.doors.api", "check": "gradcheck_lab.doors.api",
    "run_file": "gradcheck_lab.doors.api",
    "gradcheck": "gradcheck_lab.doors.dropin", "gradgradcheck": "gradcheck_lab.doors.dropin",
    "exclude": "gradcheck_lab.doors.functions",
    "BudgetError": "gradcheck_lab.errors", "CaseError": "gradcheck_lab.errors",
    "GradcheckLabError": "gradcheck_lab.errors", "ImplError": "gradcheck_lab.errors",
    "Mismatch": "gradcheck_lab.results", "Result": "gradcheck_lab.results",
    "GradcheckError": "gradcheck_lab.doors.dropin",  # subclasses torch's: built on first use
}


def __getattr__(name: str) -> Any:
    if name == "dropin":
        return importlib.import_module("gradcheck_lab.dropin")
    if name not in _HOMES:
        raise AttributeError(f"module 'gradcheck_lab' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOMES[name]), name)
    if name != "GradcheckError":  # torch's class is built per first use there; keep asking
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
