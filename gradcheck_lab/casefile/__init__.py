"""Case file -> parsed case: YAML reading, the format's schema, expressions, validation.

``yaml_reader`` (YAML with line marks, no code), ``schema`` (the format, defined once),
``expr`` (expression text -> program IR), ``loader`` (validation into a ``Case``), with
``locating`` (a key's line and column; expressions parsed at a key, their problems said
together) and ``calling`` (constants, named outputs, params, surrogates), ``budget`` (what a
case's and a file's expressions may add up to while loading), and ``selection`` (one case of a
file, for the commands that take one). Only this package reads case files.
"""

from gradcheck_lab.casefile.case import Case, Expectation, ImplRef, InputSpec, Tolerance
from gradcheck_lab.casefile.loader import (
    LoadLimits,
    RunQuota,
    build_case,
    is_case_file,
    load_file,
)

__all__ = ["Case", "Expectation", "ImplRef", "InputSpec", "LoadLimits", "RunQuota", "Tolerance",
           "build_case", "is_case_file", "load_file"]
