"""Looking into one case: ``explain`` (sympy's derivatives, step by step), ``graph`` (the
computational graph with values and gradients) and ``steps`` (finite-difference error against
the step size)."""
