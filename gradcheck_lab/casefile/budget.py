"""What loading may cost: the expression text a case, and a file's cases together, may parse,
and the program nodes a file's cases together may build, counted in integers as each
expression is parsed and built.

Each expression is bounded on its own (``ExprLimits``: characters, parts, depth) and each
case's program by ``--max-program-nodes``; their sum was not: a 12 MB file of 1,500 cases,
each one expression of 4,000 parts, took 78 s and 1 GB to load (composite functions, 99 s and
2 GB), and one case of 1,500 lets, each naming a let that failed (none a problem of its own,
each parsed whole), 24 s. Loading costs about 2 µs per character of expression text and 15 µs
and 300 bytes per program node, so the budgets below keep a file to a few seconds and a few
hundred MB, and checking a file at the node budget to about half a minute. Every budget
follows ``--max-program-nodes``: a run that raises it raises them.
"""

from __future__ import annotations

from dataclasses import dataclass

# Characters of expression text per node of --max-program-nodes: for one case (200,000 by
# default, ten times the text of the program at its node limit written as `a + b`), and for
# one file (1,000,000: some 2 s of parsing).
CASE_CHARACTERS_PER_NODE = 10
FILE_CHARACTERS_PER_NODE = 50
# Program nodes of a file's cases together, in cases at --max-program-nodes (200,000 nodes:
# some 4 s to build, 35 s to check).
FILE_NODES_PER_CASE_LIMIT = 10
RAISE = ", or raise --max-program-nodes, which the budgets follow"


@dataclass(frozen=True)
class BudgetLimits:
    """The budgets' sizes: expression characters per case and per file, program nodes per
    file."""

    case_characters: int
    file_characters: int
    file_nodes: int

    @classmethod
    def following(cls, max_program_nodes: int) -> BudgetLimits:
        return cls(CASE_CHARACTERS_PER_NODE * max_program_nodes,
                   FILE_CHARACTERS_PER_NODE * max_program_nodes,
                   FILE_NODES_PER_CASE_LIMIT * max_program_nodes)


class LoadBudget:
    """One file's budget, shared by its cases (one per ``build_case`` call from the API).
    ``charge_text`` and ``charge_nodes`` return the problem, a message, once a budget is
    past; ``spent`` says the file's is, so its remaining cases are not loaded."""

    def __init__(self, limits: BudgetLimits) -> None:
        self.limits = limits
        self.characters = 0  # the file's expression text parsed so far
        self.nodes = 0  # the program nodes its cases built so far

    @property
    def spent(self) -> bool:
        return (self.characters > self.limits.file_characters
                or self.nodes > self.limits.file_nodes)

    def charge_text(self, case_characters: int, length: int) -> str | None:
        """Count ``length`` characters more, the case's making ``case_characters``: the
        problem where a budget is past, before the text is parsed."""
        self.characters += length
        if case_characters > self.limits.case_characters:
            return (f"the case's expressions would hold {case_characters} characters in all, "
                    f"over the budget of {self.limits.case_characters} for one case (by "
                    f"default {CASE_CHARACTERS_PER_NODE} per node of --max-program-nodes): "
                    f"split the case{RAISE}")
        return self.file_problem()

    def charge_nodes(self, count: int) -> str | None:
        """Count ``count`` program nodes more: the problem where the file's budget is past."""
        self.nodes += count
        return self.file_problem()

    def file_problem(self) -> str | None:
        if self.characters > self.limits.file_characters:
            return (f"the file's expressions would hold {self.characters} characters in all, "
                    f"over the budget of {self.limits.file_characters} for one file (by "
                    f"default {FILE_CHARACTERS_PER_NODE} per node of --max-program-nodes): "
                    f"split the file{RAISE}")
        if self.nodes > self.limits.file_nodes:
            return (f"the file's programs would have {self.nodes} nodes in all, over the "
                    f"budget of {self.limits.file_nodes} for one file (by default "
                    f"{FILE_NODES_PER_CASE_LIMIT} times --max-program-nodes): split the "
                    f"file{RAISE}")
        return None

    def rest_not_loaded(self, rest: int) -> str:
        """The problem of the case not loaded, and of the ``rest`` after it, once the file's
        budget is spent."""
        after = f", nor the {rest} after it" if rest else ""
        return (f"case not loaded{after}: the cases before spent the file's load budget "
                f"({self.limits.file_characters} characters of expressions, "
                f"{self.limits.file_nodes} program nodes): split the file{RAISE}")
