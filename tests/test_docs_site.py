"""The documentation site opened from disk (``site/index.html``, as the README says): every link of
every built page, the navigation included, leads to a file that exists, not to a folder (which a
browser shows from disk as a directory listing)."""

from __future__ import annotations

import os
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from conftest import REPO

pytest.importorskip("mkdocs", reason="the docs extra (make test installs it)")


class _Links(HTMLParser):
    """The ``href`` of every ``<a>`` and ``<link>`` of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        href = dict(attrs).get("href")
        if tag in ("a", "link") and href:
            self.hrefs.append(href)


def dead_links(site: Path) -> list[str]:
    """``page -> href`` for each local link of the built ``site`` that does not name an existing file."""
    dead = []
    for page in sorted(site.rglob("*.html")):
        if page.name == "404.html":  # a server's page: its links are absolute, from site_url
            continue
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for href in parser.hrefs:
            parts = urlsplit(href)
            if parts.scheme or parts.netloc or not parts.path:  # another site, or an anchor on this page
                continue
            target = Path(unquote(parts.path)) if parts.path.startswith("/") else page.parent / unquote(parts.path)
            if not target.is_file():
                dead.append(f"{page.relative_to(site)} -> {href}")
    return dead


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--quiet", "--site-dir", str(folder)],
        cwd=REPO,
        check=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        timeout=600,
    )
    return folder


def test_every_link_of_the_site_opens_a_file_from_disk(site: Path) -> None:
    assert (site / "index.html").is_file()
    pages = {p.relative_to(site).as_posix() for p in site.rglob("*.html")}
    assert {"jobs.html", "settings.html", "troubleshooting.html"} <= pages  # one file per page, no folders
    assert dead_links(site) == []
