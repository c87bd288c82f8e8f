"""User text made safe to show: the one rendering of names, keys, paths and messages that
come from a case file for the terminal, the JSON, JUnit and pytest's reports.

A case file can hold any character (a YAML escape gives NUL, ESC or a carriage return; a key
can hold a bidirectional override): printed raw, it could move the cursor, print a fake PASS
line or reorder what the reader sees. Every character that is not printable text (control
and format characters, line and paragraph separators, spaces other than the plain one) is
written as its escape instead: ``\\x1b``, ``\\r``, ``\\u202e``.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def visible(text: str) -> str:
    """``text`` with every non-printable character escaped; printable text unchanged."""
    if text.isprintable():
        return text
    return "".join(character if character.isprintable() else _escape(character)
                   for character in text)


def _escape(character: str) -> str:
    if character in _NAMED:
        return _NAMED[character]
    code = ord(character)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
