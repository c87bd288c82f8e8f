"""The floating dtypes gradcheck-lab checks in, finest first: each one's epsilon (the spacing
of numbers just above 1) and smallest normal number (below it, numbers are subnormal and lose
relative precision). One table for the tolerances and the precision measurement alike."""

from __future__ import annotations

EPSILON = {
    "float64": 2.0**-52,
    "float32": 2.0**-23,
    "float16": 2.0**-10,
    "bfloat16": 2.0**-7,
}
SMALLEST_NORMAL = {
    "float64": 2.0**-1022,
    "float32": 2.0**-126,
    "float16": 2.0**-14,
    "bfloat16": 2.0**-126,
}
# The largest finite number: beyond it a value rounds to inf.
LARGEST = {
    "float64": (2 - 2.0**-52) * 2.0**1023,
    "float32": (2 - 2.0**-23) * 2.0**127,
    "float16": 65504.0,
    "bfloat16": (2 - 2.0**-7) * 2.0**127,
}
FINEST_FIRST = tuple(EPSILON)
