"""Every custom ``torch.autograd.Function`` a suite calls, recorded at its calls (``recorder``)
and checked there three ways (``replay``), with no test written: ``pytest
--gradcheck-functions`` (``pytest_hooks``). A Function whose backward is meant to differ from
its forward's derivative is excluded with a reason (``intent``: ``gradcheck_lab.exclude``)."""

from __future__ import annotations

from gradcheck_lab.doors.functions.intent import exclude

__all__ = ["exclude"]
