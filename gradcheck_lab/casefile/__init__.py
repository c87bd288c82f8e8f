"""Case file -> parsed case: YAML reading, the format's schema, expressions and the graph."""

from gradcheck_lab.casefile.case import Case, Expectation, ImplRef, InputSpec, Tolerance
from gradcheck_lab.casefile.loader import LoadLimits, build_case, is_case_file, load_file

__all__ = ["Case", "Expectation", "ImplRef", "InputSpec", "LoadLimits", "Tolerance",
           "build_case", "is_case_file", "load_file"]
