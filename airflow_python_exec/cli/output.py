"""The CLI's output: lines to a reader that may go away (``| head -1``), an encoding that may lack
a character."""

from __future__ import annotations

import io
import os
import sys
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # imported where used: generate-key needs neither pydantic nor the settings
    """Never die on a character the terminal's encoding lacks (``PYTHONIOENCODING=ascii``): write
    it as a backslash escape instead, as Python itself does on stderr."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def tolerant_output() -> None:
    """Never die on a character the terminal's encoding lacks (``PYTHONIOENCODING=ascii``): write
    it as a backslash escape instead, as Python itself does on stderr."""
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(errors="backslashreplace")


def discard(stream: TextIO) -> None:
    """Point ``stream``'s file descriptor at /dev/null, so that nothing written later, not even the
    interpreter's final flush, fails again (Python's documented advice for a closed pipe)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


class LineWriter:
    """Print lines to ``stream`` while someone reads them.

    A reader that goes away (``run job | head -1``) must not kill the job: the first
    ``BrokenPipeError`` silences the stream and later lines are dropped, so the job runs to its end
    and the CLI exits with its status.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.closed = False

    def __call__(self, line: str) -> None:
        if self.closed:
            return
        try:
            print(line, file=self.stream, flush=True)
        except BrokenPipeError:
            self.closed = True
            discard(self.stream)
