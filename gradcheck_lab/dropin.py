"""The drop-in's public name for other runners (``gradcheck_lab.dropin.install()``,
``with gradcheck_lab.dropin.switched(): ...``); it lives in ``gradcheck_lab.doors.dropin``."""

from gradcheck_lab.doors.dropin import (
    CALLS,
    KEYWORDS,
    BudgetError,
    DropinCall,
    gradcheck,
    gradgradcheck,
    install,
    installed,
    rebind,
    summary_lines,
    switched,
    uninstall,
)
from gradcheck_lab.doors.dropin.error import lazy_attributes

__all__ = [
    "CALLS",
    "KEYWORDS",
    "BudgetError",
    "DropinCall",
    "GradcheckError",  # noqa: F822 (built on first use, by __getattr__ below)
    "gradcheck",
    "gradgradcheck",
    "install",
    "installed",
    "rebind",
    "summary_lines",
    "switched",
    "uninstall",
]


__getattr__ = lazy_attributes(__name__)  # GradcheckError subclasses torch's: built on first use
