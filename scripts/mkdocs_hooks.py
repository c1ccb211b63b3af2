"""MkDocs hooks for `make docs` (named in mkdocs.yml).

The docstrings are Sphinx style and cross-reference with roles (``:class:`PythonJob```,
``:meth:`~x.y.run```), which mkdocstrings leaves as text: ``:class:`` before the name. This shows
the name alone, in code, as Sphinx would (``~`` keeps only its last part).
"""

from __future__ import annotations

import re
from typing import Any

_ROLE = re.compile(r":(?:class|meth|func|attr|data|mod|exc|obj|ivar):<code>(~?)([^<]*)</code>")


def _name(match: re.Match[str]) -> str:
    tilde, name = match.groups()
    return f"<code>{name.rsplit('.', 1)[-1] if tilde else name}</code>"


def on_page_content(html: str, **kwargs: Any) -> str:
    """Replace the Sphinx roles left in a page's HTML by the names they refer to."""
    return _ROLE.sub(_name, html)
