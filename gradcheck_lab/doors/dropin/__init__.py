"""The drop-in: ``gradcheck`` and ``gradgradcheck`` with ``torch.autograd``'s signatures and
contract, checked three ways (``check``); a switch that routes a whole process's calls to them
(``switch``: ``install``, ``switched``, and ``pytest --gradcheck-dropin``); the record of every
call and a session's summary (``calls``).

``GradcheckError`` subclasses torch's own and is built on first use (``error``): importing
gradcheck_lab imports no torch.
"""

from __future__ import annotations

from gradcheck_lab.doors.dropin.calls import CALLS, DropinCall, summary_lines
from gradcheck_lab.doors.dropin.check import KEYWORDS, gradcheck, gradgradcheck
from gradcheck_lab.doors.dropin.error import lazy_attributes
from gradcheck_lab.doors.dropin.switch import install, installed, rebind, switched, uninstall
from gradcheck_lab.errors import BudgetError

__all__ = ["CALLS", "KEYWORDS", "BudgetError", "DropinCall", "GradcheckError", "gradcheck",
           "gradgradcheck", "install", "installed", "rebind", "summary_lines", "switched",
           "uninstall"]


__getattr__ = lazy_attributes(__name__)  # GradcheckError subclasses torch's: built on first use
