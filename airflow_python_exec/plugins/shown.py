"""What the "Python jobs" page may show of a string taken from a job: every URL's user info hidden.

One rule for every string the page renders from a job (its fields, ``pythonEnv``, requirement
lines, the one-line error of a job that breaks a rule, the tasks that use it): in each
``scheme://userinfo@host`` the user info is replaced by ``***``, whatever the scheme
(``https``, ``git+https``, ``zip+https``, ``git+ssh``, ``ftp``, ...) and wherever the URL sits in
the text (a PEP 508 ``name @ url``, a pip option line, a quoted value inside an error message).
A token is as often the *user* part (``https://TOKEN@host``, ``https://x-access-token:TOKEN@``)
as the password, so neither is kept.

User info ends at the last ``@`` before the authority ends (RFC 3986: the first ``/``, ``?``
or ``#``), so an ``@`` in the password is covered and ``repo.git@v1`` (a git ref in the path) is not
touched.
"""

from __future__ import annotations

import re
from typing import Any

HIDDEN = "***"
#: ``scheme://`` then the user info (greedy up to the authority's last ``@``), then ``@``. The
#: characters that end a URL inside a text (space, quotes, angle brackets) also end the match.
_USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^/?#\s'\"<>`]*)@")


def hide_credentials(text: str) -> str:
    """``text`` with the user info of every URL in it replaced by ``***``.

    :param text: any string shown on the page (a value, a requirement, an error line).
    :returns: the same string, ``scheme://***@host...`` for each URL that had user info.
    """
    if "@" not in text or "://" not in text:  # the common case: nothing to look at
        return text
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{HIDDEN}@", text)


def shown(value: Any) -> Any:
    """:func:`hide_credentials` applied to every string of a JSON-like value (dict keys included).

    :returns: a new value of the same shape; numbers, booleans and ``None`` unchanged.
    """
    if isinstance(value, str):
        return hide_credentials(value)
    if isinstance(value, dict):
        return {shown(key): shown(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [shown(item) for item in value]
    return value
