"""Run by Python at the start of every process of a command under ``gradcheck-lab record``
(this folder first on PYTHONPATH). It imports nothing of gradcheck-lab until the process
imports torch (a process that never does pays for a dictionary lookup); then the recorder
starts, and at exit the process's calls are written to the folder GRADCHECK_LAB_RECORD_DIR
names. The sitecustomize this one stands in front of, if any, runs after it."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's own, without importing typing into every process
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType


class _AfterTorch:
    """A meta path finder that lets torch import as usual, then starts the recorder."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def find_spec(self, name: str, path: Sequence[str] | None = None,
                  target: ModuleType | None = None) -> ModuleSpec | None:
        if name != "torch":
            return None
        import importlib.util

        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        execute, folder = spec.loader.exec_module, self.folder

        def exec_module(module: ModuleType) -> None:
            execute(module)
            _start(folder)

        # Wrapped on this one loader object: its class, shared with other modules, is untouched.
        spec.loader.exec_module = exec_module  # type: ignore[method-assign]  # instance only
        return spec


def _start(folder: str) -> None:
    try:
        from gradcheck_lab.doors.functions.recording_file import start_recording

        start_recording(folder)
    except Exception as exc:  # the command runs on, unrecorded, and says why
        print(f"gradcheck-lab record: not recording process {os.getpid()}: {exc}",
              file=sys.stderr)


def _chain() -> None:
    """The sitecustomize this one hides, found on the rest of the path and run as its own
    module (so that ``import sitecustomize`` elsewhere finds the user's)."""
    import importlib.machinery
    import importlib.util

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is not None and spec.loader is not None:
        module = importlib.util.module_from_spec(spec)
        sys.modules["sitecustomize"] = module
        spec.loader.exec_module(module)


_folder = os.environ.get("GRADCHECK_LAB_RECORD_DIR")
if _folder:
    if "torch" in sys.modules:
        _start(_folder)
    else:
        sys.meta_path.insert(0, _AfterTorch(_folder))
_chain()
