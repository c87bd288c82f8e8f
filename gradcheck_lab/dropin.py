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

__all__ = ["CALLS", "KEYWORDS", "BudgetError", "DropinCall", "gradcheck", "gradgradcheck",
           "install", "installed", "rebind", "summary_lines", "switched", "uninstall"]
