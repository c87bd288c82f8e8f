"""Oracle results -> findings -> a verdict, as data.

``bundle`` (one point's results from the three oracles), ``tolerances`` (the bound of each
oracle, per dtype), ``findings`` (mismatches, the vote, the merge), one module per check
(``gradients``, ``values``, ``contract``, ``devices``, ``modes``) and ``verdict`` (the checks of
one point, merged). Nothing here runs an oracle, raises for a disagreement or prints.
"""

from gradcheck_lab.compare.bundle import OracleResults
from gradcheck_lab.compare.findings import Findings, Verdict
from gradcheck_lab.compare.verdict import compare

__all__ = ["Findings", "OracleResults", "Verdict", "compare"]
