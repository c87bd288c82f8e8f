"""gradcheck-lab: verify gradients three ways (symbolic, autograd, finite differences).

The Python API sits next to the YAML route: ``check(...)`` for a case written in Python,
``run_file(path)`` for a case file. Both return the Result objects the CLI reports.
``gradcheck``/``gradgradcheck`` take torch.autograd's signatures, with the spec traced;
``gradcheck_lab.dropin.install()`` (or ``pytest --gradcheck-dropin``) routes torch's own to them;
``pytest --gradcheck-functions`` checks every custom Function a suite calls, and ``exclude``
declares one whose backward is not meant to be its forward's derivative.
Importing this package imports neither torch nor sympy.
"""

from __future__ import annotations

from gradcheck_lab import dropin
from gradcheck_lab.doors.api import assert_gradients, check, run_file
from gradcheck_lab.doors.dropin import gradcheck, gradgradcheck
from gradcheck_lab.doors.dropin.error import lazy_attributes
from gradcheck_lab.doors.functions import exclude
from gradcheck_lab.errors import BudgetError, CaseError, GradcheckLabError, ImplError
from gradcheck_lab.results import Mismatch, Result
from gradcheck_lab.version import __version__

__all__ = ["BudgetError", "CaseError", "GradcheckError", "GradcheckLabError", "ImplError",
           "Mismatch", "Result", "__version__", "assert_gradients", "check", "dropin", "exclude",
           "gradcheck",
           "gradgradcheck", "run_file"]


__getattr__ = lazy_attributes(__name__)  # GradcheckError subclasses torch's: built on first use
