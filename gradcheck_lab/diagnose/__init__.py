"""What a check's figures mean beyond pass or fail: ``localize`` (which step of a spec-only
case diverges), ``sensitivity`` (the smallest error a pass rules out) and ``timing`` (forward
and backward speed, the one timing path of the CLI and the benchmarks)."""
