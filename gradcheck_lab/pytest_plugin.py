"""The pytest plugin's entry point (``pytest11``: ``gradcheck_lab = gradcheck_lab.pytest_plugin``).

A stable name for users who load it by hand (``-p gradcheck_lab.pytest_plugin``); the hooks
live in ``gradcheck_lab.doors.pytest_plugin``.
"""

from gradcheck_lab.doors.pytest_plugin import (
    pytest_addoption,
    pytest_collect_file,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_configure,
    pytest_ignore_collect,
    pytest_report_header,
    pytest_report_teststatus,
    pytest_runtest_makereport,
    pytest_unconfigure,
)

__all__ = ["pytest_addoption", "pytest_collect_file", "pytest_collection_finish",
           "pytest_collection_modifyitems", "pytest_configure", "pytest_ignore_collect",
           "pytest_report_header", "pytest_report_teststatus", "pytest_runtest_makereport",
           "pytest_unconfigure"]
