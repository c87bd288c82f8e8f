"""The project's error types. Everything a user can get wrong in a case raises CaseError."""

from __future__ import annotations

from collections.abc import Sequence


class GradcheckLabError(Exception):
    """Base class of every error gradcheck-lab raises on purpose."""


class CaseError(GradcheckLabError):
    """A problem in a case file, rendered as ``file:line[:column]: key: message``."""

    def __init__(
        self, file: str, line: int | None, key: str, message: str, column: int | None = None,
        case: str | None = None, also: Sequence[CaseError] = (),
    ) -> None:
        self.case = case  # the case's name, when the problem is inside one named case
        self.file = file
        self.line = line
        self.key = key
        self.message = message
        self.column = column
        # Further problems found at once (every schema problem of a case): each its own line.
        self.also = list(also)
        super().__init__("\n".join(self.lines()))

    def lines(self) -> list[str]:
        """This problem's line, then one line for each further problem."""
        return [self.render(), *(other.render() for other in self.also)]

    def render(self) -> str:
        """One line, always: messages that carry line breaks (from a library) are folded,
        and any other character that is not printable text is escaped (``visible``)."""
        from gradcheck_lab.visible import visible

        where = visible(self.file)
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        message = visible(" ".join(self.message.split()))
        return f"{where}: {visible(self.key)}: {message}"


class SpecError(GradcheckLabError):
    """A problem found before the file and line are known (parser, shape rules, validators).

    The loader catches it and re-raises it as a CaseError at the right key; ``offset`` is a
    0-based column inside the expression text when the problem has one.
    """

    def __init__(self, message: str, offset: int | None = None, key: str | None = None) -> None:
        self.message = message
        self.offset = offset
        self.key = key  # the case key whose expression failed, when known (e.g. "let.q")
        super().__init__(message)


class UndefinedNameError(SpecError):
    """An expression names nothing defined: the loader tells one that names an earlier let
    which itself failed (a consequence, not a problem of its own) from a misspelling."""

    def __init__(self, message: str, name: str, offset: int | None = None) -> None:
        super().__init__(message, offset)
        self.name = name


class ImplError(GradcheckLabError):
    """The implementation under test raised or returned something unusable."""


class BudgetError(GradcheckLabError, MemoryError):
    """A check would need more memory or time than its budget: refused, never a verdict."""


class CaseTimeout(BaseException):
    """The case ran past its time budget (raised by ``run.budget``'s interval timer)."""


class PassThrough(BaseException):
    """Raised by gradcheck-lab's own code while user code runs (the tracer stopping a
    recording): it passes through the user's frames and is never the user's failure."""


class Terminated(PassThrough):
    """SIGTERM, raised in the main thread as SIGINT raises KeyboardInterrupt (the command
    line's handler): like an interrupt it passes through the user's frames, never their
    failure (a SIGTERM inside a backward once became that case's error, and the run went on)."""


def raised_by_user_code(exc: BaseException) -> bool:
    """Whether an exception out of an impl, a module factory or a training step is the user
    code's own failure, to report as an error result: anything, ``BaseException`` subclasses
    and ``SystemExit`` included, but the case's time budget running out and an interrupt
    (Ctrl-C stops the run; the worker process reports an impl's own KeyboardInterrupt)."""
    return not isinstance(exc, (CaseTimeout, KeyboardInterrupt, PassThrough))
