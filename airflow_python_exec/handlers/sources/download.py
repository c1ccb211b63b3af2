"""Download a ``zip+https://`` source archive into the source cache, with conditional requests."""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

from airflow_python_exec.environments.build_once import disk_errors_as_provisioning, ms
from airflow_python_exec.errors import JobConfigError, ProvisioningError
from airflow_python_exec.isolation.archive import CHUNK, too_big
from airflow_python_exec.models.source_spec import SourceSpec


class Downloader:
    """Stream one URL's archive into a temporary file in ``sources_dir``.

    :param sources_dir: ``<cache_dir>/sources``; the temporary file is made there (same file system
        as the entry it is unpacked into).
    :param timeout_s: seconds allowed per network read.
    :param max_source_bytes: largest archive downloaded, in bytes.
    :param say: receives progress lines (without the ``[python_exec]`` prefix).
    """

    def __init__(self, sources_dir: Path, timeout_s: float, max_source_bytes: int, say: Callable[[str], None]) -> None:
        self.sources_dir = sources_dir
        self.timeout_s = timeout_s
        self.max_source_bytes = max_source_bytes
        self._say = say

    @contextlib.contextmanager
    def download(
        self, spec: SourceSpec, known: dict[str, str] | None = None
    ) -> Iterator[tuple[Path, str, dict[str, str]] | None]:
        """Download the archive into a temporary file in ``sources/``; yield it, its SHA-256 and the
        response's validators (``etag``, ``last_modified``), or ``None`` when the server says the
        ``known`` download is still current (HTTP 304).

        The file is removed on leaving, whatever happens.
        """
        with disk_errors_as_provisioning("source cache"):
            self.sources_dir.mkdir(parents=True, exist_ok=True)
            fd, name = tempfile.mkstemp(prefix=".download-", suffix=".zip", dir=self.sources_dir)
        path = Path(name)
        try:
            with os.fdopen(fd, "wb") as out:
                fetched = self._fetch(spec, out, known)
            if fetched is None:
                yield None
                return
            digest, validators = fetched
            if spec.sha256 and digest != spec.sha256:
                raise ProvisioningError(
                    f"downloaded {spec.display} has sha256 {digest}, not {spec.sha256} as "
                    "its #sha256 says; check the URL or update the digest"
                )
            yield path, digest, validators
        finally:
            path.unlink(missing_ok=True)

    def _fetch(
        self, spec: SourceSpec, out: BinaryIO, known: dict[str, str] | None = None
    ) -> tuple[str, dict[str, str]] | None:
        """Stream the URL into ``out``; return the SHA-256 of what was written and the response's
        validators, or ``None`` when a conditional request (from ``known``) is answered 304."""
        started = time.monotonic()
        headers = {"User-Agent": "airflow-python-exec"}
        if known and known.get("etag"):
            headers["If-None-Match"] = known["etag"]
        if known and known.get("last_modified"):
            headers["If-Modified-Since"] = known["last_modified"]
        request = urllib.request.Request(spec.location, headers=headers)
        digest, size = hashlib.sha256(), 0
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                validators = {
                    key: response.headers[name]
                    for key, name in (("etag", "ETag"), ("last_modified", "Last-Modified"))
                    if response.headers.get(name)
                }
                declared = response.headers.get("Content-Length")
                if declared and declared.isdigit() and int(declared) > self.max_source_bytes:
                    raise JobConfigError(too_big(spec.display, self.max_source_bytes))
                for block in iter(lambda: response.read(CHUNK), b""):
                    size += len(block)
                    if size > self.max_source_bytes:
                        raise JobConfigError(too_big(spec.display, self.max_source_bytes))
                    digest.update(block)
                    out.write(block)
        except urllib.error.HTTPError as exc:
            if exc.code == 304 and known:
                self._say(f"source {spec.display}: not modified since the last download (HTTP 304)")
                return None
            raise ProvisioningError(
                f"downloading {spec.display} failed: HTTP {exc.code} {exc.reason}; check the URL and its access rights"
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ProvisioningError(
                f"downloading {spec.display} failed: {reason}; check the URL and the network"
            ) from None
        self._say(f"source {spec.display}: downloaded {size} bytes ({ms(started)})")
        return digest.hexdigest(), validators
