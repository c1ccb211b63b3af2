"""Replace decrypted ``secure`` macro values in output lines with ``***``.

Every occurrence is replaced by exactly ``***`` whatever the value's length, so neither the value
nor its length reaches the log. A multi-line value is also matched line by line, since output is
handled one line at a time. This runs before a line leaves the service; Airflow's own
``mask_secret`` is a second net on the task-log side.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MASK = "***"


class Redactor:
    """Callable ``str -> str`` that masks ``secrets`` (a no-op when there are none).

    :param secrets: plain-text values to hide; empty strings are ignored.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        values: set[str] = set()
        for secret in secrets:
            values.add(secret)
            values.update(part for part in secret.splitlines() if part.strip())
        values.discard("")
        # Longest first, so a value that contains another is masked whole.
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        #: Length of the longest value: a stream must keep this many characters minus one of an
        #: unfinished line back, so no value is cut in two before it is masked.
        self.longest = len(ordered[0]) if ordered else 0

    def __call__(self, line: str) -> str:
        if self._pattern is None:
            return line
        return self._pattern.sub(MASK, line)
