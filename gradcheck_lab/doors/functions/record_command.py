"""``gradcheck-lab record [-o FILE] -- COMMAND``: the command runs as it would, every Python
process of it recording the custom Functions it calls (``site/sitecustomize.py``, put first
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

SITE = Path(__file__).resolve().parent / "site"


def record(command: Sequence[str], out: Path) -> int:
    """Run ``command`` recording, write ``out``; the command's own exit status."""
    if not command:
        print("gradcheck-lab record: give the command to run after --, e.g. "
              "gradcheck-lab record -- python -m pytest tests", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="gradcheck-lab-record-") as folder:
        env = {**os.environ, "GRADCHECK_LAB_RECORD_DIR": folder,
               "PYTHONPATH": os.pathsep.join(p for p in (str(SITE),
                                                         os.environ.get("PYTHONPATH"))
                                             if p)}
        try:
            status = subprocess.call(list(command), env=env)
        except OSError as exc:
            print(f"gradcheck-lab record: {command[0]}: {exc.strerror}", file=sys.stderr)
            return 2
        try:
            records = recording_file.merge_folder(Path(folder), out)
        except (OSError, recording_file.RecordingError) as exc:
            print(f"gradcheck-lab record: {out}: {exc}", file=sys.stderr)
            return 2
    calls = sum(len(record.calls) for record in records)
    print(f"gradcheck-lab record: {calls} call(s) of {len(records)} custom Function(s) "
          f"recorded to {out}; check them with: gradcheck-lab run {out}", file=sys.stderr)
    if not records:
        print("gradcheck-lab record: no custom torch.autograd.Function was called (a Python "
              "started with -I or -S, or without gradcheck-lab installed, is not recorded)",
              file=sys.stderr)
    return status
