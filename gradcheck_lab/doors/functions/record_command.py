"""``gradcheck-lab record [-o FILE] -- COMMAND``: the command runs as it would, every Python
process of it recording the custom Functions it calls (``startup/sitecustomize.py``, put first
on PYTHONPATH, starts the recorder once the process imports torch); the processes' calls are
merged into one file that ``gradcheck-lab run FILE`` checks."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from gradcheck_lab.doors.functions import recording_file

STARTUP = Path(__file__).resolve().parent / "startup"


def record(command: Sequence[str], out: Path) -> int:
    """Run ``command`` recording, write ``out``; the command's own exit status."""
    if not command:
        print("gradcheck-lab record: give the command to run after --, e.g. "
              "gradcheck-lab record -- python -m pytest tests", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gradcheck-lab-record-") as folder:
        env = {**os.environ, "GRADCHECK_LAB_RECORD_DIR": folder,
               "PYTHONPATH": os.pathsep.join(p for p in (str(STARTUP),
                                                         os.environ.get("PYTHONPATH"))
                                             if p)}
        try:
            status = subprocess.call(list(command), env=env)
        except OSError as exc:
            print(f"gradcheck-lab record: {command[0]}: {exc.strerror}", file=sys.stderr)
            return 2
        try:
            entries, problems = recording_file.merge_folder(Path(folder), out)
        except OSError as exc:
            print(f"gradcheck-lab record: {out}: {exc.strerror or exc}", file=sys.stderr)
            return status or 2
    for problem in problems:
        print(f"gradcheck-lab record: {problem}", file=sys.stderr)
    calls = sum(len(entry["calls"]) for entry in entries)
    print(f"gradcheck-lab record: {calls} call(s) of {len(entries)} custom Function(s) "
          f"recorded to {out}; check them with: gradcheck-lab run {out}", file=sys.stderr)
    if not entries:
        print("gradcheck-lab record: no custom torch.autograd.Function was called in a Python "
              "process that recorded (one started with -I or -S, or with its own PYTHONPATH "
              "that leaves gradcheck-lab's out, or without gradcheck-lab installed, does not "
              "record)", file=sys.stderr)
    return status
