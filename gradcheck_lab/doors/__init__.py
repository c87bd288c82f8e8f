"""The front doors: ``cli`` (the command line, exit codes), ``report`` (terminal and JSON),
``render`` (one rendering of a failure for every door), ``pytest_plugin`` (YAML cases as test
items, timings through pytest-benchmark), ``api`` (``check`` and ``run_file``) and
``scaffold`` (``gradcheck-lab new``). Only these talk to the terminal or to pytest."""
