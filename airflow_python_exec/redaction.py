"""Replace decrypted ``secure`` macro values in output lines with ``***``.

Every occurrence is replaced by exactly ``***`` whatever the value's length, so neither the value
nor its length reaches the log. A multi-line value is also matched line by line, since output is
handled one line at a time. A value is also matched in the escaped forms a script prints without
meaning to: the body of its ``repr()`` (``print({"password": secret})``, ``KeyError(secret)``) and of
its ``json.dumps()`` with and without ``ensure_ascii``. Encodings a script applies on purpose (base64,
hex, ...) are out of reach. This runs before a line leaves the service; Airflow's own
``mask_secret`` is a second net on the task-log side.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

MASK = "***"


class Redactor:
    """Callable ``str -> str`` that masks ``secrets`` (a no-op when there are none).

    :param secrets: plain-text values to hide; empty strings are ignored.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {form for secret in secrets for form in secret_forms(secret)}
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


def secret_forms(secret: str) -> set[str]:
    """The texts that give ``secret`` away: itself, each of its non-blank lines, and the bodies of
    its ``repr()`` and ``json.dumps()`` (with and without ``ensure_ascii``). Empty for ``""``."""
    if not secret:
        return set()
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms.update(part for part in secret.splitlines() if part.strip())
    forms.discard("")
    return forms
