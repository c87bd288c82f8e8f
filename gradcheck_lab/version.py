"""The package's version, in one place (the CLI, the pytest header and pyproject)."""

__version__ = "0.1.0"
