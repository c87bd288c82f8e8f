"""The program: the case's computation as a graph of op nodes, and the walkers over it.

``ir`` (what expressions parse into), ``graph`` (nodes with shapes checked when built),
``interpret`` (the one forward walker, in numpy, sympy or torch), ``sweep`` (the one reverse
walker, over the op table's VJP rules) and ``naming`` (nodes spelled as the case file spells
them). Nothing here reads files or knows the case format.
"""

from gradcheck_lab.program.graph import Node, Program, ProgramBuilder

__all__ = ["Node", "Program", "ProgramBuilder"]
