"""The check of a case: the pipeline that runs the oracles, the comparison and the checks
beside it (forward mode, second order, devices, the training step) into Results."""

from gradcheck_lab.pipeline.case_check import CaseCheck, run_case

__all__ = ["CaseCheck", "run_case"]
