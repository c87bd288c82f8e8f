"""The drop-in's public name for other runners (``gradcheck_lab.dropin.install()``,
``with gradcheck_lab.dropin.switched(): ...``); it lives in ``gradcheck_lab.doors.dropin``."""

from typing import Any

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


def __getattr__(name: str) -> Any:
    if name == "GradcheckError":
        from gradcheck_lab.doors.dropin.error import gradcheck_error

        return gradcheck_error()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
