"""Fetch one commit of a ``git+<url>`` source with the ``git`` program (no prompt, bounded time,
the tree held to the entry and byte limits before checkout)."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from airflow_python_exec.environments.build_once import ms
from airflow_python_exec.errors import JobConfigError, ProvisioningError
from airflow_python_exec.isolation.archive import too_big
from airflow_python_exec.models.source_spec import FULL_SHA, HEX_DIGITS, SourceSpec
from airflow_python_exec.redaction import hide_url_credentials


class GitFetcher:
    """Look up and check out commits with the ``git`` program.

    :param timeout_s: seconds allowed for each ``git`` command.
    :param max_entries: most files a commit's tree may hold.
    :param max_source_bytes: largest checkout, in bytes (from ``git ls-tree`` sizes).
    :param say: receives progress lines (without the ``[python_exec]`` prefix).
    """

    def __init__(self, timeout_s: float, max_entries: int, max_source_bytes: int, say: Callable[[str], None]) -> None:
        self.timeout_s = timeout_s
        self.max_entries = max_entries
        self.max_source_bytes = max_source_bytes
        self._say = say

    def commit_of(self, spec: SourceSpec) -> str:
        """The commit sha of ``spec.ref``: a full sha as is, else asked with ``git ls-remote``."""
        if spec.ref and FULL_SHA.match(spec.ref):
            return spec.ref
        ref = spec.ref or "HEAD"
        out = self._run_git(["ls-remote", *_strict(spec), "--", spec.location, ref, f"{ref}^{{}}"], spec, "ls-remote")
        refs = {}  # ref name -> sha, from "<sha>\t<name>" lines
        for line in out.splitlines():
            sha, _, name = line.partition("\t")
            refs[name] = sha
        for name in [ref] if ref == "HEAD" or ref.startswith("refs/") else [f"refs/heads/{ref}", f"refs/tags/{ref}"]:
            found = refs.get(f"{name}^{{}}") or refs.get(name)  # a peeled tag names its commit
            if found:
                return found
        hint = " (a short sha cannot be looked up: give all 40 characters)" if HEX_DIGITS.match(ref) else ""
        raise JobConfigError(
            f"{spec.display}: {ref!r} is not a branch or tag of the repository{hint}; "
            "give an existing branch, tag or a full commit sha"
        )

    def checkout(self, spec: SourceSpec, commit: str, dest: Path) -> dict[str, object]:
        started = time.monotonic()
        self._say(f"source {spec.display}: fetching commit {commit}")
        self._run_git(["init", "-q", str(dest)], spec, "init")
        try:
            self._run_git(
                [
                    *("-C", str(dest), "fetch", "-q", *_strict(spec)),
                    *("--depth", "1", "--no-tags", "--", spec.location, commit),
                ],
                spec,
                "fetch",
            )
        except ProvisioningError:
            # Servers that refuse a bare commit in a shallow fetch: fetch every branch and tag.
            self._run_git(
                [
                    "-C",
                    str(dest),
                    "fetch",
                    "-q",
                    *_strict(spec),
                    "--no-tags",
                    "--",
                    spec.location,
                    "+refs/heads/*:refs/remotes/all/*",
                    "+refs/tags/*:refs/tags/*",
                ],
                spec,
                "fetch",
            )
        entries, size = self._check_tree(spec, commit, dest)
        self._run_git(
            ["-C", str(dest), "-c", "advice.detachedHead=false", "checkout", "-q", "--detach", commit], spec, "checkout"
        )
        shutil.rmtree(dest / ".git")  # an immutable snapshot: history and packs only cost space
        self._say(f"source {spec.display}: checked out {entries} file(s) ({ms(started)})")
        return {"commit": commit, "ref": spec.ref, "entries": entries, "bytes": size}

    def _check_tree(self, spec: SourceSpec, commit: str, dest: Path) -> tuple[int, int]:
        """Hold the commit's tree to the entry and byte limits before anything is checked out."""
        out = self._run_git(["-C", str(dest), "ls-tree", "-r", "-l", "-z", "--full-tree", commit], spec, "ls-tree")
        entries, size = 0, 0
        for record in filter(None, out.split("\0")):
            entries += 1
            fields = record.split("\t", 1)[0].split()
            if len(fields) == 4 and fields[3].isdigit():
                size += int(fields[3])
        if entries > self.max_entries:
            raise JobConfigError(
                f"{spec.display} has {entries} files, more than {self.max_entries}; "
                "use a smaller repository or a subdirectory of one"
            )
        if size > self.max_source_bytes:
            raise JobConfigError(too_big(spec.display, self.max_source_bytes))
        return entries, size

    def _run_git(self, args: list[str], spec: SourceSpec, what: str) -> str:
        # No prompt for credentials (nobody would answer); C locale so "fatal:" lines are found.
        env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        try:
            done = subprocess.run(
                ["git", *args],
                capture_output=True,
                text=True,
                env=env,
                stdin=subprocess.DEVNULL,
                timeout=self.timeout_s,
            )
        except FileNotFoundError:
            raise ProvisioningError(f"git is not installed on this worker; install it to use {spec.display}") from None
        except subprocess.TimeoutExpired:
            raise ProvisioningError(
                f"git {what} of {spec.display} did not finish within {self.timeout_s:g} s; "
                "check the repository and the network"
            ) from None
        if done.returncode != 0:
            lines = [
                ln.strip()
                for ln in done.stderr.replace(spec.location, hide_url_credentials(spec.location)).splitlines()
            ]
            detail = next(
                (ln for ln in lines if ln.startswith("fatal:")), lines[0] if lines else f"exit {done.returncode}"
            )
            raise ProvisioningError(
                f"git {what} of {spec.display} failed: {detail}; check the URL, the ref and access to the repository"
            )
        return done.stdout


#: Files of a git folder through which git reads objects or settings of another repository.
_BORROWING = {"objects/info/alternates", "objects/info/http-alternates", "commondir"}


def _strict(spec: SourceSpec) -> list[str]:
    """For a local repository (an absolute path: its checked git folder), git's upload-pack takes that
    folder or nothing: never ``<path>/.git``, ``<path>.git`` or a ``gitdir:`` file it would find there."""
    return ["--upload-pack=git-upload-pack --strict"] if spec.location.startswith("/") else []


def refuse_borrowed_objects(repo: Path, display: str) -> Path:
    """Refuse a local repository that would make git read another one with the worker's rights.

    git reads the objects named by ``objects/info/alternates`` (and ``http-alternates``), a linked
    worktree's ``commondir``, a ``.git`` file's ``gitdir:``, and follows symbolic links inside the git
    folder: each could bring another job's private commits into this job's source (DESIGN.md "Reach").
    The repository must be a folder holding its own objects: a work tree with a ``.git`` folder, or a
    bare repository.

    :param repo: the checked local path (a work tree or a bare repository).
    :param display: the source as shown in messages.
    :returns: the git folder checked (``repo/.git``, or ``repo`` itself): the one git must read.
    :raises JobConfigError: one line naming the file and the fix.
    """
    git_dir = repo / ".git"
    try:
        mode = os.lstat(git_dir).st_mode
    except (FileNotFoundError, NotADirectoryError):
        git_dir = repo  # a bare repository
    else:
        if not stat.S_ISDIR(mode):
            _refuse(display, ".git is not a folder (a linked worktree or submodule's .git file)")
    for folder, dirs, files in os.walk(git_dir):  # links are listed, never followed
        below = os.path.relpath(folder, git_dir)
        for name in (*dirs, *files):
            rel = name if below == "." else f"{below}/{name}"
            if os.path.islink(os.path.join(folder, name)):
                _refuse(display, f"{rel} in its git folder is a symbolic link")
            if rel in _BORROWING:
                _refuse(display, f"its git folder has {rel}")
    return git_dir


def _refuse(display: str, why: str) -> None:
    raise JobConfigError(
        f"{display}: {why}, through which git would read another repository; give a repository that "
        "holds its own objects (git repack -a -d, then remove objects/info/alternates; or a fresh git clone --no-local)"
    )
