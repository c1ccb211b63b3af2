"""JSON from outside the worker, parsed with a nesting limit (DESIGN.md "Containment and sandbox").

Python's ``json`` recurses once per nesting level: a value a few thousand levels deep raises
``RecursionError`` while it is parsed, and one a few hundred levels deep may raise it later, in the
code that walks it (masking, validation, Airflow's XCom serialisation). Every JSON text the worker
takes from a user or a job (``job.json``, ``--param``, ``--params-file``, a templated ``parameters``,
the result file, a handler's error file) goes through :func:`loads`, which refuses a text nested
deeper than :data:`MAX_JSON_DEPTH`, in one line. The bootstrap applies the same
limit to a handler's return value (it cannot import this module: it repeats the constant).
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

#: Deepest nesting of arrays and objects accepted, in levels (``[[1]]`` is 2).
MAX_JSON_DEPTH = 100

#: A JSON string (its escapes included): brackets inside one are text, not nesting.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)  # unrolled: one step per run of plain text
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JSONDepthError(ValueError):
    """A JSON text nested deeper than :data:`MAX_JSON_DEPTH` (a ``ValueError``, as a syntax error is)."""


def depth(text: str) -> int:
    """How deeply ``text``'s arrays and objects nest (0 for a scalar), without parsing it.

    Linear in the text's length, and the scan runs in the regular-expression engine: a megabyte of
    JSON takes milliseconds. Unbalanced brackets are left for the parser to report.
    """
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    if not brackets:
        return 0
    return max(accumulate(1 if c in "[{" else -1 for c in brackets))


def check_depth(text: str, what: str, max_depth: int = MAX_JSON_DEPTH) -> None:
    """Refuse ``text`` when it nests deeper than ``max_depth``.

    :param what: names the text in the message (``"--params-file p.json"``).
    :raises JSONDepthError: ``<what> is nested too deeply (deeper than <max_depth> levels); flatten it``.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return
    if depth(text) > max_depth:
        raise JSONDepthError(f"{what} is nested too deeply (deeper than {max_depth} levels); flatten it")


def loads(text: str | bytes, what: str, max_depth: int = MAX_JSON_DEPTH, **kwargs: Any) -> Any:
    """``json.loads(text, **kwargs)`` after :func:`check_depth`.

    A text with fewer opening brackets than ``max_depth`` cannot be too deep and costs two counts;
    any other is scanned first (about 150 ms per MiB of JSON, a few times the parse itself: the
    price of never handing a deep value to code that recurses).

    :param what: names the text in the depth error.
    :raises JSONDepthError: too deep.
    :raises json.JSONDecodeError: not valid JSON (``ValueError`` both).
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    check_depth(text, what, max_depth)
    try:
        return json.loads(text, **kwargs)
    except RecursionError:  # unbalanced brackets the scan could not count, or a deep stack already
        raise JSONDepthError(f"{what} is nested too deeply (deeper than {max_depth} levels); flatten it") from None
