"""The bytecode store: each installed distribution's ``.pyc`` files compiled once per interpreter,
then hard-linked into every later environment that installs the same files.

``<cache_dir>/bytecode/<name>-<version>-<digest>-<cache tag>-<full Python version>/`` holds one
distribution's bytecode, laid out as in ``site-packages`` (``pandas/__pycache__/frame.cpython-311.pyc``)
plus ``.files`` (what it holds and its size), written last. ``digest`` is a SHA-256 of the
distribution's ``.py`` files as installed (path and content, read by the worker, never taken from the
wheel's own ``RECORD``, which a hostile wheel could forge), so an entry is only ever linked to the
very sources it was compiled from. Files no distribution claims form one more group, named
``_unowned``. Reading every source for its digest costs seconds for pandas on a loaded machine, so
``.index/`` remembers, for the exact files an entry was found for (device, inode, size, modification
time: uv links the same files from its cache into every environment), which entry they have; the
sources are read again only when uv unpacked them anew, or copied them.

Integrity: an entry is assembled under ``.tmp-<entry>-<pid>-<random>`` and renamed complete, with its
``.files`` inside; only a folder with ``.files`` is used, so a process killed mid-store leaves a
temporary folder that nothing links (``envs prune`` removes it). Two provisioners needing the same
missing entry share one compile: each takes ``<entry>.lock`` (a ``filelock`` lock, in name order, so
they never deadlock) or sees ``.files`` appear while the other compiles. Stored files are read-only;
the store is under ``cache_dir``, which every sandbox hides.

The bytecode is written in ``unchecked-hash`` mode (PEP 552): valid whatever the source files'
modification times (uv links files from its cache and may re-extract them), and, since the
entry's name is a digest of the sources, never paired with other sources.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bounded import Bounded

STORE = "bytecode"
#: Inside a store entry, written last: ``{"files": [<pyc path relative to site-packages>...], "bytes": N}``.
LISTING = ".files"
#: Inside an environment: the store entries it links (JSON list), read by prune and the cache cap.
USES = ".bytecode"
UNOWNED = "_unowned"
_SAFE = re.compile(r"[^A-Za-z0-9._+]")
_ENTRY = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*")
#: ``bytecode/.index/<digest of the files' identities>`` -> the entry (see :func:`_group`).
INDEX = ".index"


@dataclass
class Group:
    """The ``.py`` files of one installed distribution (or the unowned ones) in one ``site-packages``.

    :ivar entry: the store entry's folder name; :ivar sources: paths relative to ``site_packages``.
    """

    site_packages: Path
    entry: str
    sources: list[str]
    tag: str = "cpython"
    #: the index's name for these exact files; ``indexed``: the entry was found through it.
    seen: str = ""
    indexed: bool = False


@dataclass
class Plan:
    """What :func:`bytecode_plan` decided for one environment.

    :ivar linked: ``.pyc`` files linked from the store; :ivar compile: ``.py`` files to compile
        (absolute); :ivar build: groups whose entries this process stores after the compile (it holds
        their locks); :ivar entries: every entry the environment uses; :ivar hits: the groups the
        store has, with their entries' listings, for :meth:`link` to link.
    """

    linked: int = 0
    compile: list[str] = field(default_factory=list)
    build: list[Group] = field(default_factory=list)
    entries: list[str] = field(default_factory=list)
    locks: list[Any] = field(default_factory=list)
    hits: list[tuple[Group, Path, list[str]]] = field(default_factory=list)
    #: disk usage by inode of the files measured, and the files not measured yet (see :meth:`measure`)
    usage: dict[tuple[int, int], int] = field(default_factory=dict)
    unmeasured: list[os.DirEntry[str]] = field(default_factory=list)

    def measure(self) -> int:
        """Disk usage of ``site-packages`` without its bytecode, bytes (for the environment's recorded
        size). The files that are not sources are measured at the first call, which
        :func:`link_while_compiling` makes while the compile runs: half the walk's cost, off its path."""
        for entry in self.unmeasured:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:  # removed meanwhile: nothing to count
                continue
            self.usage[(st.st_dev, st.st_ino)] = st.st_blocks * 512
        self.unmeasured = []
        return sum(self.usage.values())

    def link(self) -> list[str]:
        """Link the store's hits into the environment (while :attr:`compile` compiles: the two overlap);
        return the ``.py`` files of those whose entry was removed meanwhile, to compile (not stored:
        this process holds no lock for them, and taking one now could deadlock)."""
        late: list[str] = []
        for group, entry, files in self.hits:
            if not _link_files(entry, group, files, self):
                late.extend(str(group.site_packages / rel) for rel in group.sources)
        self.hits = []
        return late


def store_dir(cache_dir: Path) -> Path:
    """``<cache_dir>/bytecode``."""
    return cache_dir / STORE


@contextlib.contextmanager
def bytecode_plan(
    env: Path,
    cache_dir: Path,
    python_version: str,
    *,
    timeout_s: float,
    stopped: Callable[[], bool] = lambda: False,
) -> Iterator[Plan]:
    """Find what the store has for environment ``env`` and lock what it lacks; yield the
    :class:`Plan`: the caller starts compiling :attr:`Plan.compile`, calls :meth:`Plan.link` while it
    runs, and waits for it; when the block ends without error, store what it compiled. Locks are
    always released.

    :param python_version: the base interpreter's full version (``"3.11.7"``).
    :param timeout_s: seconds to wait for another process compiling the same entry (``lock_timeout``).
    :raises ProvisioningError: such a wait timed out or was stopped.
    :raises OSError: the store cannot be written (the caller turns it into one line).
    """
    store = store_dir(cache_dir)
    index = store / INDEX
    index.mkdir(parents=True, exist_ok=True)
    plan = Plan()
    try:
        site = sorted(env.glob("lib/python*/site-packages"))
        groups = [g for sp in site for g in _groups(sp, python_version, index, plan)]
        plan.entries = sorted({g.entry for g in groups})
        (env / USES).write_text(json.dumps(plan.entries))
        missing = []
        for group in groups:
            files = _listing(store / group.entry)
            if files is None:
                missing.append(group)
            else:
                plan.hits.append((group, store / group.entry, files))
        for group in sorted(missing, key=lambda g: g.entry):
            _lock_or_link(store, group, plan, timeout_s, stopped)
        yield plan
        for group in plan.build:
            _store(store, group)
        _remember(index, groups)
    finally:
        for lock in plan.locks:
            lock.release()


def link_while_compiling(plan: Plan, start: Callable[[list[str]], Bounded], wait: Callable[[Bounded], int]) -> int:
    """Start compiling :attr:`Plan.compile` (``start``), link the store's hits while it runs, then
    ``wait`` for it (its exit status); compile the files of an entry removed while it was linked. On
    two cores the linking costs nothing more. A failure (or an interrupt) while linking kills the
    compile before it is raised; a compile that did not end well (a limit, the timeout) stores
    nothing. Returns how many files were compiled."""
    compiling = start(plan.compile) if plan.compile else None
    try:
        late = plan.link()
        plan.measure()  # now, while the compile runs
    except BaseException:
        if compiling is not None:
            compiling.kill()
            wait(compiling)
        raise
    if compiling is not None and wait(compiling) != 0:
        plan.build.clear()  # its entries would lack bytecode for good: a later environment compiles again
    if late:  # a prune removed an entry while it was linked
        wait(start(late))
    return len(plan.compile) + len(late)


def _lock_or_link(store: Path, group: Group, plan: Plan, timeout_s: float, stopped: Callable[[], bool]) -> None:
    import filelock

    from .build_once import acquire_or_see_marker

    entry = store / group.entry
    lock = filelock.FileLock(str(store / f"{group.entry}.lock"))
    if acquire_or_see_marker(
        lock, entry / LISTING, timeout_s=timeout_s, what=f"bytecode {group.entry}", stopped=stopped
    ):
        plan.locks.append(lock)
        if _link_entry(entry, group, plan):  # stored between our first look and the lock
            return
        plan.build.append(group)
        plan.compile.extend(str(group.site_packages / rel) for rel in group.sources)
    elif not _link_entry(entry, group, plan):  # removed again at once: compile without storing
        plan.compile.extend(str(group.site_packages / rel) for rel in group.sources)


def _listing(entry: Path) -> list[str] | None:
    """The ``.pyc`` files of a complete ``entry`` (its ``.files``), ``None`` when it is absent."""
    try:
        files = json.loads((entry / LISTING).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return files if isinstance(files, list) else None


def _link_entry(entry: Path, group: Group, plan: Plan) -> bool:
    """Link every ``.pyc`` of a complete ``entry`` into the group's ``site-packages``; ``False`` when
    the entry is absent (or removed while linking: the caller compiles instead)."""
    files = _listing(entry)
    return files is not None and _link_files(entry, group, files, plan)


def _link_files(entry: Path, group: Group, files: list[str], plan: Plan) -> bool:
    """Link ``files`` (the entry's listing) into the group's ``site-packages``; ``False`` when the
    entry was removed while linking. A ``__pycache__`` that is a symbolic link gets nothing.

    Thousands of files: plain strings, each folder made by one ``mkdir`` (``makedirs`` only when
    its parent is missing), and ``os.link`` called inline (its fallbacks only on error)."""
    folders: dict[str, bool] = {}  # __pycache__ folder -> may be written (made once, never a link)
    source, target = f"{entry}/", f"{group.site_packages}/"
    link = os.link
    try:
        for rel in files:
            folder = rel.rpartition("/")[0]
            writable = folders.get(folder)
            if writable is None:
                writable = folders[folder] = _make_folder(target + folder)
            if writable:
                try:
                    link(source + rel, target + rel)
                except FileNotFoundError:
                    raise
                except OSError:
                    _link(source + rel, target + rel)
    except FileNotFoundError:
        return False
    plan.linked += len(files)
    return True


def _make_folder(folder: str) -> bool:
    """Make ``folder`` (and its parents when missing); ``False`` when it is a symbolic link."""
    try:
        os.mkdir(folder)
    except FileExistsError:
        return not os.path.islink(folder)
    except FileNotFoundError:
        os.makedirs(folder, exist_ok=True)
    return True


def _link(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except FileExistsError:  # a .pyc the wheel shipped: ours replaces it
        os.unlink(target)
        os.link(source, target)
    except FileNotFoundError:
        raise
    except OSError:
        shutil.copy2(source, target)  # another file system, or links not allowed


def _store(store: Path, group: Group) -> None:
    """Gather the group's freshly compiled ``.pyc`` files into a temporary entry (links), make them
    read-only, write ``.files`` last, and rename the folder into place."""
    tmp = store / f".tmp-{group.entry}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    files, total = [], 0
    try:
        for rel in group.sources:
            pyc = _pyc_of(rel, group.tag)
            compiled = group.site_packages / pyc
            if not compiled.is_file() or compiled.parent.is_symlink():
                continue  # did not compile (a Python 2 file in a package): no bytecode, as pip leaves it
            (tmp / pyc).parent.mkdir(parents=True, exist_ok=True)
            os.chmod(compiled, 0o444)
            os.link(compiled, tmp / pyc)
            files.append(pyc)
            total += os.stat(compiled).st_blocks * 512
        (tmp / LISTING).write_text(json.dumps({"files": files, "bytes": total}))
        os.rename(tmp, store / group.entry)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _groups(site_packages: Path, python_version: str, index: Path, plan: Plan) -> list[Group]:
    """Every ``.py`` file under ``site_packages`` (no symbolic link followed), grouped by the
    distribution whose ``RECORD`` lists it, each group named by the digest of its files."""
    sources = dict(_walk_sources(site_packages, plan))
    tag = f"cpython-{site_packages.parent.name.removeprefix('python').replace('.', '')}"
    groups, owned = [], set()
    for dist_info in sorted(site_packages.glob("*.dist-info")):
        mine = sorted(rel for rel in set(_record_sources(dist_info)) if rel in sources and rel not in owned)
        if mine:
            owned.update(mine)
            name, _, version = dist_info.name.removesuffix(".dist-info").partition("-")
            groups.append(_group(site_packages, (name, version, tag, python_version), mine, sources, index))
    rest = sorted(set(sources) - owned)
    if rest:
        groups.append(_group(site_packages, (UNOWNED, "0", tag, python_version), rest, sources, index))
    return groups


def _group(
    site_packages: Path, what: tuple[str, str, str, str], mine: list[str], sources: dict[str, tuple], index: Path
) -> Group:
    """One group, its entry found through the index when its files are the very files (same inode,
    size and modification time) an earlier environment's digest was taken of: uv links the same
    files from its cache into every environment, so the sources are read only when uv unpacked them
    anew (or copies them)."""
    name, version, tag, python = what
    seen = hashlib.sha256(repr((what, [(rel, sources[rel]) for rel in mine])).encode()).hexdigest()[:32]
    try:
        entry = (index / seen).read_text()
        if _ENTRY.fullmatch(entry) and (index.parent / entry / LISTING).is_file():
            return Group(site_packages, entry, mine, tag, seen, indexed=True)
    except OSError:
        pass
    digest = hashlib.sha256()
    for rel in mine:
        with open(os.path.join(site_packages, rel), "rb", buffering=0) as file:
            digest.update(rel.encode("utf-8", "surrogateescape") + b"\0" + hashlib.sha256(file.read()).digest())
    parts = (name.lower(), version, digest.hexdigest()[:24], tag, python)
    return Group(site_packages, "-".join(_SAFE.sub("_", part) or "_" for part in parts), mine, tag, seen)


def _walk_sources(root: Path, plan: Plan) -> Iterator[tuple[str, tuple[int, int, int, int]]]:
    """``(path relative to root, (device, inode, size, mtime_ns))`` of the regular ``.py`` files under
    ``root``, not descending symbolic links; their disk usage goes to ``plan.usage`` by inode, the
    other files to ``plan.unmeasured`` (:meth:`Plan.measure`); ``__pycache__`` left out: the
    bytecode counts in the store."""
    stack = [""]
    while stack:
        rel = stack.pop()
        prefix = f"{rel}/" if rel else ""
        with os.scandir(f"{root}/{prefix}") as entries:
            for entry in entries:  # thousands: no path made for a file that is not a source
                if entry.is_dir(follow_symlinks=False):
                    if entry.name != "__pycache__":
                        stack.append(prefix + entry.name)
                    continue
                if not (entry.name.endswith(".py") and entry.is_file(follow_symlinks=False)):
                    plan.unmeasured.append(entry)
                    continue
                st = entry.stat(follow_symlinks=False)
                plan.usage[(st.st_dev, st.st_ino)] = st.st_blocks * 512
                yield prefix + entry.name, (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _record_sources(dist_info: Path) -> Iterator[str]:
    """The ``.py`` paths the distribution's ``RECORD`` lists. Thousands of rows: split by hand (a
    third of the ``csv`` module's time) unless a row is quoted (a path with a comma or a quote)."""
    try:
        with open(dist_info / "RECORD", encoding="utf-8", newline="") as record:
            text = record.read()
    except (OSError, UnicodeDecodeError):
        return
    if '"' not in text:
        for line in text.splitlines():
            path = line.partition(",")[0]
            if path.endswith(".py"):
                yield os.path.normpath(path)
        return
    try:
        for row in csv.reader(text.splitlines()):
            if row and row[0].endswith(".py"):
                yield os.path.normpath(row[0])
    except csv.Error:
        return


def _remember(index: Path, groups: list[Group]) -> None:
    """Write the index entries of the groups whose entry was found by reading their sources."""
    for group in groups:
        if group.indexed or not (index.parent / group.entry / LISTING).is_file():
            continue
        tmp = index / f".{group.seen}.{os.getpid()}.tmp"
        tmp.write_text(group.entry)
        os.replace(tmp, index / group.seen)


def _pyc_of(rel: str, tag: str) -> str:
    folder, _, name = rel.rpartition("/")
    pyc = f"__pycache__/{name[:-3]}.{tag}.pyc"
    return f"{folder}/{pyc}" if folder else pyc
