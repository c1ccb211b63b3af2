"""Replace decrypted ``secure`` macro values in output lines with ``***``.

Every occurrence is replaced by exactly ``***`` whatever the value's length, so neither the value
nor its length reaches the log. A multi-line value is also matched line by line, since output is
handled one line at a time. A value is also matched in the escaped forms a script prints without
meaning to: the body of its ``repr()`` (``print({"password": secret})``, ``KeyError(secret)``) and of
its ``json.dumps()`` with and without ``ensure_ascii``. Encodings a script applies on purpose (base64,
hex, ...) are out of reach. This runs before a line leaves the service; Airflow's own
``mask_secret`` is a second net on the task-log side. A value is matched with its surrounding
whitespace stripped too (a message is often stripped before it is shown).

JSON values (a run's result, every XCom, an asset event's ``extra``, what the Python jobs page shows)
go through :func:`mask_json` (:meth:`Redactor.mask_value`): every string and every key has each
occurrence replaced as a line would, and a number equal to a secret whose text is a number
(``int(pin)``, ``float(amount)``) becomes the string ``***``.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from decimal import Decimal, InvalidOperation
from typing import Any

MASK = "***"
#: A secret's text that is a number (JSON's form, plus a sign, leading zeros and a bare point).
_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")


class Redactor:
    """Callable ``str -> str`` that masks ``secrets`` (a no-op when there are none).

    :param secrets: plain-text values to hide; empty strings are ignored.
    """

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {form for secret in secrets for form in secret_forms(secret)}
        #: Every text this masks (:func:`secret_forms` of each secret): what Airflow's
        #: ``mask_secret`` is given too, so the forms are computed once per run.
        self.forms = frozenset(values)
        # Longest first, so a value that contains another is masked whole.
        ordered = sorted(values, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None
        #: Length of the longest value: a stream must keep this many characters minus one of an
        #: unfinished line back, so no value is cut in two before it is masked.
        self.longest = len(ordered[0]) if ordered else 0
        numbers = {n for n in map(_as_number, values) if n is not None}
        # Plain sets of int and float: a lookup per number of a large result costs a hash, no Decimal.
        self._ints = {int(n) for n in numbers if n == n.to_integral_value()}
        self._floats = {float(n) for n in numbers}

    def __call__(self, line: str) -> str:
        if self._pattern is None:
            return line
        return self._pattern.sub(MASK, line)

    def mask_value(self, value: Any) -> Any:
        """``value`` (JSON-like: dicts, lists, tuples, strings, numbers) with every secret replaced.

        Strings and keys: every occurrence, as :meth:`__call__` does for a line. Numbers (``int`` or
        ``float``, not ``bool``) equal to a secret whose text is a number: the string ``***``. Other
        values are returned as they are. Containers are copied, never changed in place.
        """
        if self._pattern is None:
            return value
        return map_json(value, self, self._mask_number)

    def _mask_number(self, value: float) -> Any:
        if isinstance(value, int):
            return MASK if value in self._ints else value
        return MASK if math.isfinite(value) and value in self._floats else value


def map_json(value: Any, text: Callable[[str], str], number: Callable[[float], Any] | None = None) -> Any:
    """A copy of ``value`` (JSON-like: dicts, lists, tuples, strings, numbers) with ``text`` applied
    to every string and every key, and ``number`` (when given) to every ``int`` and ``float`` (not
    ``bool``). Other values are kept as they are; containers are copied, never changed in place.

    The one walker of JSON values: :meth:`Redactor.mask_value` and :func:`hide_credentials_in`.
    """
    if isinstance(value, str):
        return text(value)
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, (int, float)):
        return number(value) if number is not None else value
    if isinstance(value, dict):
        return {map_json(k, text, number): map_json(v, text, number) for k, v in value.items()}
    if isinstance(value, list):
        return [map_json(v, text, number) for v in value]
    if isinstance(value, tuple):
        return tuple(map_json(v, text, number) for v in value)
    return value


def mask_json(value: Any, secrets: Iterable[str]) -> Any:
    """``value`` with every occurrence of each secret replaced by ``***``: inside strings, in keys, as a
    number, with and without its surrounding whitespace (see :meth:`Redactor.mask_value`).

    The one function for JSON values that leave the worker: results, XComs, asset event ``extra``,
    the Python jobs page.

    :param value: a JSON value (dicts, lists, strings, numbers, booleans, ``None``).
    :param secrets: decrypted values (empty strings ignored).
    :returns: a masked copy (``value`` itself when there is nothing to mask).
    """
    return Redactor(secrets).mask_value(value)


#: ``scheme://`` then the user info (greedy up to the authority's last ``@``: RFC 3986 ends the
#: authority at the first ``/``, ``?`` or ``#``, so an ``@`` in a password is covered and a git ref in
#: the path, ``repo.git@v1``, is not), then ``@``. Space, quotes and angle brackets end a URL in a text.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s'\"<>`]*)@")


def hide_url_credentials(text: str) -> str:
    """``text`` with the user info of every URL in it replaced by ``***``, whatever the scheme
    (``https``, ``git+https``, ``zip+https``, ``git+ssh``...) and wherever the URL sits (a PEP 508
    ``name @ url``, a pip option line, a quoted value in an error message). A token is as often the
    *user* part (``https://TOKEN@host``) as the password, so neither is kept.

    :returns: the same string, ``scheme://***@host...`` for each URL that had user info.
    """
    if "@" not in text or "://" not in text:  # the common case: nothing to look at
        return text
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{MASK}@", text)


def hide_credentials_in(value: Any) -> Any:
    """:func:`hide_url_credentials` applied to every string of a JSON-like value, keys included.

    The one rule for every string the "Python jobs" page renders from a job (its fields,
    ``pythonEnv``, requirement lines, the one-line error of a job that breaks a rule, the tasks that
    use it), the same the task log's messages follow.

    :returns: a copy of the same shape; numbers, booleans and ``None`` unchanged.
    """
    return map_json(value, hide_url_credentials)


def secret_forms(secret: str) -> set[str]:
    """The texts that give ``secret`` away: itself, each of its non-blank lines, the bodies of its
    ``repr()`` and ``json.dumps()`` (with and without ``ensure_ascii``), and each of these with its
    surrounding whitespace stripped. Empty for ``""``."""
    if not secret:
        return set()
    forms = {secret, repr(secret)[1:-1], json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}
    forms.update(part for part in secret.splitlines() if part.strip())
    forms.update({form.strip() for form in forms})
    forms.discard("")
    return forms


def _as_number(text: str) -> Decimal | None:
    """``text`` as a number when it is written as one (``"4711"``, ``"2.50"``, ``" 0042 "``), else ``None``."""
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None
