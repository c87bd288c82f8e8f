"""The subject under test: the function as the check calls it (the impl, or the spec lowered
to torch), the points it is called at, the cotangents its output is probed with, and how
precisely it computes. Every oracle is handed the same subject."""
