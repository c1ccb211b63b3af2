"""Reach: what a job may name (DESIGN.md "Reach: what a job may name"), the pure half.

A job names places: input URIs, an output's ``uri``, requirement URLs and files, sources, lock files,
local extras. The worker acts on them with its own rights, so every such value goes through one
parser (:func:`parse_location`) and one decision (:meth:`Reach.check`), and the *same* parsed value
is then opened (:mod:`airflow_python_exec.isolation.reach_io`: no link at any component, by
descriptor, with a byte cap). Nothing here touches the disk or the network.

- Every spelling that reaches the local file system is local: a bare or relative path, ``file:``,
  ``File://``, ``FILE://``, ``local://``; the scheme is case-folded; ``..`` is resolved once, here.
- The allow-list, not a deny-list: a local place must be inside an allowed root (the job folder
  when reading, the data store, ``data_allowed_uris``' folders); a remote one under the data store
  or an allowed prefix; a connection (the user info of ``s3://conn@bucket/...``) must be listed in
  ``data_connections``; ``http(s)`` only with network and an allowed prefix.
- Inside an allowed root, ``/proc``, ``/dev``, ``/sys`` and the sandbox's hidden places stay
  refused, unless the root itself lies inside the hidden place (the sandbox shows it again).

Every refusal is a :class:`~airflow_python_exec.errors.JobConfigError` of one line that quotes the
value as the job wrote it (credentials replaced), never the content of a file.
"""

from __future__ import annotations

import os
import posixpath
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from airflow_python_exec.errors import JobConfigError
from airflow_python_exec.isolation.reach_io import KERNEL_PLACES
from airflow_python_exec.redaction import hide_url_credentials

if TYPE_CHECKING:
    from airflow_python_exec.settings import EngineSettings

#: Schemes that name the local file system (after case-folding).
LOCAL_SCHEMES = ("file", "local")
#: Schemes the worker fetches over the network itself (never with ``sandbox_network = False``).
WEB_SCHEMES = ("http", "https")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):(.*)\Z", re.S)
#: Longest value looked at: a longer one is refused before any parsing.
MAX_LENGTH = 4096


@dataclass(frozen=True)
class Location:
    """A job-named place, parsed once.

    :ivar raw: the value as the job wrote it.
    :ivar scheme: case-folded; ``file`` for every local spelling.
    :ivar path: local: an absolute path with ``..`` resolved; remote: ``host/path`` (no user info).
    :ivar connection: the connection id in the user info (``s3://conn@bucket``), else ``None``.
    """

    raw: str
    scheme: str
    path: str
    connection: str | None = None

    @property
    def local(self) -> bool:
        return self.scheme == "file"

    @property
    def public(self) -> str:
        """The place without user info: ``file:///a/b``, ``s3://bucket/x``."""
        return f"file://{self.path}" if self.local else f"{self.scheme}://{self.path}"

    @property
    def uri(self) -> str:
        """What the storage layer opens: :attr:`public` with the connection id put back."""
        if self.local or self.connection is None:
            return self.public
        return f"{self.scheme}://{self.connection}@{self.path}"

    @property
    def shown(self) -> str:
        """The value as written, credentials replaced: what a refusal quotes."""
        return hide_url_credentials(self.raw)


def parse_location(value: object, base: str | None, what: str) -> Location:
    """Parse a job-named path or URI.

    :param value: what the job wrote.
    :param base: the folder a relative path is taken from (the job folder), or ``None`` when a
        relative path is not allowed here.
    :param what: names the field in messages (``input 'raw'``, ``outputs[0].uri``).
    :raises JobConfigError: not a string, too long, a control character, a remote host in a
        ``file:`` URL, a password in a URL, ``..`` in a remote path.
    """
    if not isinstance(value, str) or not value.strip():
        raise JobConfigError(f"{what}: {value!r} is not a path or URI")
    text = value.strip()
    if len(text) > MAX_LENGTH:
        raise JobConfigError(f"{what}: a value of {len(text)} characters is not a path or URI; {MAX_LENGTH} at most")
    if any(ord(c) < 32 or ord(c) == 127 for c in text):
        raise JobConfigError(f"{what}: {hide_url_credentials(text)!r} holds a control character; remove it")
    match = _SCHEME.match(text)
    scheme = match.group(1).lower() if match else ""
    if match and (scheme in LOCAL_SCHEMES or match.group(2).startswith("//")):
        rest = match.group(2)
    else:
        scheme, rest = "file", text
    if scheme in LOCAL_SCHEMES:
        return Location(text, "file", _local_path(text, rest, base, what, explicit=match is not None))
    authority, slash, path = rest[2:].partition("/")
    user, at, host = authority.rpartition("@")
    if at and ":" in user:
        raise JobConfigError(
            f"{what}: {hide_url_credentials(text)!r} carries a password; name an Airflow connection "
            "listed in [python_exec] data_connections instead"
        )
    if scheme in WEB_SCHEMES and at:
        raise JobConfigError(
            f"{what}: {hide_url_credentials(text)!r} carries credentials; http(s) inputs are read without any"
        )
    parts = path.split("/")
    if any(p in ("..", ".") or p.lower() in ("%2e%2e", "%2e.", ".%2e") for p in parts):
        raise JobConfigError(f"{what}: {hide_url_credentials(text)!r} contains '..' or '.'; name the place itself")
    host = host.lower() if scheme in WEB_SCHEMES else host
    return Location(text, scheme, f"{host}{slash}{path}", user or None)


def _local_path(text: str, rest: str, base: str | None, what: str, *, explicit: bool) -> str:
    """The absolute, ``..``-resolved path of a local spelling."""
    if explicit and rest.startswith("//"):
        host, slash, path = rest[2:].partition("/")
        if host.lower() not in ("", "localhost"):
            raise JobConfigError(
                f"{what}: {text!r} names the host {host!r}; a local path is file:///path (three slashes)"
            )
        rest = slash + path
    if rest.startswith("~"):
        raise JobConfigError(f"{what}: {text!r} starts with '~'; give the absolute path")
    if not rest.startswith("/"):
        if base is None:
            raise JobConfigError(f"{what}: {text!r} is a relative path; give an absolute path or a URI")
        rest = f"{base.rstrip('/')}/{rest}"
    path = posixpath.normpath(rest)
    return "/" + path.lstrip("/")  # normpath keeps a leading '//'


def within(path: str, folder: str) -> bool:
    """``path`` is ``folder`` or inside it (both absolute and normalized)."""
    return path == folder or path.startswith(folder.rstrip("/") + "/")


def _under_prefix(uri: str, prefix: str) -> bool:
    """``uri`` lies under the URI ``prefix`` at a path boundary (``https://a.org`` never allows
    ``https://a.org.evil.net/``)."""
    if prefix.endswith("/"):
        return uri.startswith(prefix) or uri == prefix.rstrip("/")
    return uri == prefix or uri.startswith(prefix + "/")


@dataclass(frozen=True)
class Root:
    """A local folder a job may reach: the spelling it was configured with and where it really is."""

    path: str
    real: str
    writable: bool


@dataclass(frozen=True)
class Reach:
    """What a job may name, for one run (built from the settings by the caller).

    :ivar roots: local folders allowed (the job folder read-only; the data store and
        ``data_allowed_uris``' folders read and write).
    :ivar prefixes: remote URI prefixes allowed (no user info, scheme case-folded).
    :ivar connections: connection ids a job may name (``data_connections``).
    :ivar hidden: real paths the sandbox hides (and ``/proc``, ``/dev``, ``/sys``).
    :ivar network: ``False`` (``sandbox_network = False``): no job-named URL is fetched.
    """

    roots: tuple[Root, ...]
    prefixes: tuple[str, ...] = ()
    connections: tuple[str, ...] = ()
    hidden: tuple[str, ...] = KERNEL_PLACES
    network: bool = True

    def local_root(self, location: Location, what: str, *, write: bool = False) -> tuple[Root, str]:
        """The allowed root holding a local ``location`` and the path below it (``""`` for the root).

        :raises JobConfigError: outside every allowed root, or inside a hidden or kernel place.
        """
        found = []
        for root in self.roots:
            if write and not root.writable:
                continue
            for spelling in dict.fromkeys((root.path, root.real)):
                if within(location.path, spelling):
                    found.append((root, location.path[len(spelling) :].lstrip("/")))
        if not found:
            places = (
                "the data store or [python_exec] data_allowed_uris"
                if write
                else ("the job folder, the data store or [python_exec] data_allowed_uris")
            )
            raise JobConfigError(f"{what}: {location.shown!r} is outside {places}; {_FIX}")
        root, below = max(found, key=lambda rb: len(rb[0].real))
        real = posixpath.join(root.real, below) if below else root.real
        for place in self.hidden:
            if within(real, place) and (place in KERNEL_PLACES or len(place) > len(root.real)):
                raise JobConfigError(f"{what}: {location.shown!r} is inside {place}, which a job may not reach; {_FIX}")
        return root, below

    def hidden_inside(self, real_folder: str) -> str | None:
        """A hidden place inside the folder ``real_folder`` (an input folder may not hold one)."""
        return next((p for p in self.hidden if within(p, real_folder) and p != real_folder), None)

    def check_remote(self, location: Location, what: str) -> None:
        """Refuse a remote ``location`` that is not under an allowed prefix, names a connection not
        listed, or would be fetched over the web without network.

        :raises JobConfigError: one line naming the setting to change.
        """
        if location.scheme in WEB_SCHEMES and not self.network:
            raise JobConfigError(
                f"{what}: {location.shown!r} would be fetched over the network, and "
                "[python_exec] sandbox_network is False; copy it into the job folder or the data store"
            )
        if location.connection is not None and location.connection not in self.connections:
            raise JobConfigError(
                f"{what}: connection {location.connection!r} in {location.shown!r} is not in "
                "[python_exec] data_connections; use an allowed connection or ask an administrator to add it"
            )
        if not any(_under_prefix(location.public, p) for p in self.prefixes):
            raise JobConfigError(
                f"{what}: {location.shown!r} is outside the data store and [python_exec] data_allowed_uris; {_FIX}"
            )


_FIX = "copy it into the job folder or the data store, or ask an administrator to allow its prefix"


def canonical_prefix(value: str) -> str:
    """A ``data_allowed_uris`` entry or the data store as a prefix comparable with
    :attr:`Location.public` (scheme case-folded, user info dropped)."""
    location = parse_location(value, None, "[python_exec] data_allowed_uris")
    return location.public + ("/" if value.endswith("/") and not location.public.endswith("/") else "")


def local_folders(prefixes: Iterable[str]) -> list[str]:
    """The local folders among canonical prefixes (``file:///srv/data/`` -> ``/srv/data``)."""
    return [p[len("file://") :].rstrip("/") or "/" for p in prefixes if p.startswith("file://")]


def default_data_store() -> str:
    """``file://$AIRFLOW_HOME/python_exec/data`` (``~/airflow`` when ``AIRFLOW_HOME`` is unset)."""
    home = os.path.abspath(os.path.expanduser(os.environ.get("AIRFLOW_HOME") or "~/airflow"))
    return f"file://{home}/python_exec/data"


def data_store_uri(value: str | None) -> str:
    """The data store base URI: ``value`` (a URI, or an absolute local folder), else the default.

    :raises ValueError: a relative path, or a value without a scheme that is not a folder path.
    """
    if value is None or not str(value).strip():
        return default_data_store()
    text = str(value).strip().rstrip("/") or "/"
    if "://" in text:
        return text
    if os.path.isabs(os.path.expanduser(text)):
        return f"file://{os.path.abspath(os.path.expanduser(text))}"
    raise ValueError(f"data_store {text!r} is not a URI; write it like file:///data/store or s3://conn@bucket/path")


def reach_for(settings: EngineSettings, job_folder: Path, data_store: str | None = None) -> Reach:
    """What a job in ``job_folder`` may name under ``settings`` (DESIGN.md "Reach").

    Reads only the settings and the real paths of the roots and hidden places.

    :param data_store: the data store URI (default: ``settings.data_store``, else the default store).
    :raises JobConfigError: a ``data_store`` or ``data_allowed_uris`` entry that is not a place, or a
        local data store in a kernel place, holding a worker's place (``AIRFLOW_HOME``, the DAGs
        folder, ``cache_dir``...), or inside one (but for the default store's own folder).
    """
    from airflow_python_exec.isolation.reach_io import hidden_places, real_places
    from airflow_python_exec.isolation.sandbox import hidden_paths

    try:
        store_text = data_store_uri(data_store if data_store is not None else settings.data_store)
    except ValueError as exc:
        raise JobConfigError(str(exc)) from None
    store = parse_location(store_text, None, "data_store")
    paths = real_places(hidden_paths(settings.cache_dir, job_folder))
    hidden = hidden_places(paths)
    # A data store may lie in a temporary folder, the home folder or beside the job folder (hidden
    # from a sandboxed job for its privacy); never in or around the worker's own places.
    private = {"/tmp", tempfile.gettempdir(), os.path.expanduser("~"), _user_home(), str(job_folder.parent)}
    worker = hidden_places({p: real for p, real in paths.items() if p not in private})
    folder = os.path.realpath(str(job_folder))
    roots = [Root(str(job_folder), folder, writable=False)]
    prefixes = [store.public]
    if store.local:
        _check_store(store, worker, default_data_store()[len("file://") :])
        roots.append(Root(store.path, os.path.realpath(store.path), writable=True))
    for entry in settings.data_allowed_uris:
        prefix = canonical_prefix(entry)
        prefixes.append(prefix)
        roots.extend(Root(f, os.path.realpath(f), writable=True) for f in local_folders([prefix]))
    connections = settings.data_connections
    if connections is None:
        connections = (store.connection,) if store.connection else ()
    elif store.connection is not None and store.connection not in connections:
        raise JobConfigError(
            f"data_store {store.shown!r}: connection {store.connection!r} is not in [python_exec] data_connections"
        )
    return Reach(tuple(roots), tuple(prefixes), tuple(connections), hidden, settings.sandbox_network)


def _user_home() -> str:
    """The worker's home in the password database (``HOME`` may point elsewhere)."""
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_dir
    except KeyError:
        return os.path.expanduser("~")


def _check_store(store: Location, worker: tuple[str, ...], default: str) -> None:
    """A local data store is where the worker writes: never a kernel place, never a folder that holds
    the worker's own places, never inside one (``AIRFLOW_HOME/dags``), but for the default store's."""
    real = os.path.realpath(store.path)
    inside = next((p for p in worker if within(real, p) or within(p, real)), None)
    if inside is not None and not within(real, os.path.realpath(default)):
        raise JobConfigError(
            f"data_store {store.shown!r} overlaps {inside}, which jobs may not write; choose a folder of its own"
        )


def code_reach(settings: EngineSettings, job_folder: Path) -> Reach:
    """Where a job's requirement files and ``file:`` URLs, local extras, lock files and local git
    sources may be read from: the job folder and ``data_allowed_uris``' folders (DESIGN.md "Reach")."""
    from airflow_python_exec.isolation.reach_io import hidden_places
    from airflow_python_exec.isolation.sandbox import hidden_paths

    roots = [Root(str(job_folder), os.path.realpath(job_folder), writable=False)]
    prefixes = [canonical_prefix(entry) for entry in settings.data_allowed_uris]
    roots.extend(Root(f, os.path.realpath(f), writable=False) for f in local_folders(prefixes))
    hidden = hidden_places(hidden_paths(settings.cache_dir, job_folder))
    return Reach(tuple(roots), tuple(prefixes), (), hidden, settings.sandbox_network)


def check_local(reach: Reach, value: str, base: str | None, what: str) -> Location:
    """Parse a job-named local path or ``file:`` URL, check it under ``reach``, and open it once the
    way the rule says (no link at any component) to be sure it is a file or folder there.

    :returns: the parsed location (its ``path`` is what the caller hands on, never ``value``).
    :raises JobConfigError: not local, not allowed, missing, or reached through a link.
    """
    from airflow_python_exec.isolation.reach_io import ReachIOError, open_beneath

    location = parse_location(value, base, what)
    if not location.local:
        raise JobConfigError(f"{what}: {location.shown!r} is not a local path; {_FIX}")
    root, below = reach.local_root(location, what)
    try:
        os.close(open_beneath(root.real, below))
    except FileNotFoundError:
        raise JobConfigError(f"{what}: {location.shown!r} does not exist") from None
    except (ReachIOError, OSError) as exc:
        raise JobConfigError(f"{what}: {location.shown!r} is refused: {exc}") from None
    return location
