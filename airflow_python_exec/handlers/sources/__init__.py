"""A job's source, resolved to a local folder: a folder, a zip archive, or a git repository.

Accepted forms of ``function.source`` (DESIGN.md, "Functions: handler jobs"):

- ``src/``: a folder, relative to the job folder and inside it; used in place.
- ``code.zip[#sha256=<hex>]``: a zip file, relative to the job folder and inside it.
- ``zip+https://host/code.zip[#sha256=<hex>]`` (or ``zip+http://``): a zip file, downloaded.
- ``git+<url>[@<ref>][#subdirectory=<dir>]``: pip's VCS URL form ("VCS Support" in pip's docs),
  for any URL ``git`` accepts over the protocols it allows by default (``https``, ``ssh``, ``git``,
  ``file``; never ``ext::``); ``<ref>`` is a branch, a tag or a full commit sha (default: the remote's ``HEAD``).

A zip form also takes ``#subdirectory=<dir>`` (e.g. the ``project-main/`` folder of a GitHub
download). ``#sha256=<hex>`` names the archive's digest up front: when that archive is already
cached, nothing is read or downloaded. Without it, a ``zip+https://`` archive's digest and HTTP
validators (``ETag``, ``Last-Modified``) are kept in ``sources/url-<digest of the URL>.json``, and the
next run asks the server with ``If-None-Match`` / ``If-Modified-Since``: a 304 answer reuses the
cached archive without downloading it.

Archives are unpacked into ``<cache_dir>/sources/<sha256 of the archive>/``, git commits checked out
into ``<cache_dir>/sources/<commit sha>/`` (without ``.git``). Each entry is built once under a
``filelock`` lock (``sources/<id>.lock``) and used only once its marker ``sources/<id>.provisioned``
exists, written last by an atomic rename (see :mod:`airflow_python_exec.environments.build_once`). The marker
sits beside the folder, not in it, so no file of the source can pose as a marker.

Archive rules: an entry with an absolute path, ``..``, a symlink, a device, a FIFO or a socket, an
encrypted entry, a name that appears twice, more than :data:`MAX_ENTRIES` entries, or more than
``max_source_bytes`` unpacked (declared sizes checked first, actual bytes counted while unpacking)
refuses the whole archive; nothing is left behind but the entry's (empty) lock file. A git commit
is held to the same entry and byte limits (from ``git ls-tree`` before checkout); symlinks in a git
tree are kept (git writes them itself and never follows them), submodules are not fetched.
"""

from __future__ import annotations

from airflow_python_exec.handlers.sources.resolver import MARKER_SUFFIX, SourceResolver

__all__ = ["MARKER_SUFFIX", "SourceResolver"]
