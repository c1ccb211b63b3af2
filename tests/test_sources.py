"""Job sources: folders, real zip archives (local and over HTTP) and real git repositories (file://).

No network: archives are written on the spot, served by a local ``http.server`` on 127.0.0.1, and
repositories are made with ``git init`` in a temporary folder.
"""

from __future__ import annotations

import hashlib
import http.server
import os
import shutil
import stat
import struct
import subprocess
import threading
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from airflow_python_exec.errors import JobConfigError, ProvisioningError
from airflow_python_exec.handlers.sources import SourceResolver
from airflow_python_exec.isolation.archive import MAX_ENTRIES
from airflow_python_exec.models.source_spec import parse_source


def make_zip(path: Path, files: dict[str, bytes | str], modes: dict[str, int] | None = None) -> Path:
    """Write a zip of ``files``; ``modes`` gives an entry a Unix file type (symlink, device, FIFO...)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = (modes or {}).get(name, stat.S_IFREG | 0o644) << 16
            zf.writestr(info, data)
    return path


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def cache_leftovers(cache: Path) -> list[str]:
    """What the source cache holds besides lock files (which stay, as for environments)."""
    sources = cache / "sources"
    return sorted(p.name for p in sources.iterdir() if not p.name.endswith(".lock")) if sources.is_dir() else []


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def lines() -> list[str]:
    return []


@pytest.fixture
def resolver(cache: Path, lines: list[str]) -> SourceResolver:
    return SourceResolver(cache, on_line=lines.append)


@pytest.fixture
def job(tmp_path: Path) -> Path:
    folder = tmp_path / "job"
    (folder / "src" / "pkg").mkdir(parents=True)
    (folder / "src" / "pkg" / "handlers.py").write_text("def hello():\n    return 'hi'\n")
    return folder


@pytest.fixture
def repo(tmp_path: Path) -> dict[str, str]:
    """A git repository: v1 (annotated tag) has sub/mod.py saying 'one'; main moved on to 'two'."""
    path = tmp_path / "repo"
    (path / "sub").mkdir(parents=True)
    git("init", "-q", "-b", "main", cwd=path)
    git("config", "user.email", "t@example.com", cwd=path)
    git("config", "user.name", "tests", cwd=path)
    (path / "sub" / "mod.py").write_text("WHO = 'one'\n")
    (path / "top.py").write_text("TOP = 1\n")
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", "one", cwd=path)
    git("tag", "-a", "v1", "-m", "release 1", cwd=path)
    (path / "sub" / "mod.py").write_text("WHO = 'two'\n")
    git("commit", "-q", "-am", "two", cwd=path)
    return {
        "path": str(path),
        "url": f"file://{path}",
        "v1": git("rev-parse", "v1^{commit}", cwd=path),
        "main": git("rev-parse", "main", cwd=path),
    }


# -- parsing -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "kind", "location", "ref", "subdirectory"),
    [
        ("src/", "folder", "src/", None, None),
        ("code.zip", "zip", "code.zip", None, None),
        (
            "zip+https://example.com/a/code.zip#subdirectory=code-main",
            "zip_url",
            "https://example.com/a/code.zip",
            None,
            "code-main",
        ),
        ("git+https://example.com/org/repo.git", "git", "https://example.com/org/repo.git", None, None),
        (
            "git+https://example.com/org/repo.git@v1.2#subdirectory=pkg/src",
            "git",
            "https://example.com/org/repo.git",
            "v1.2",
            "pkg/src",
        ),
        ("git+ssh://git@example.com/org/repo.git@main", "git", "ssh://git@example.com/org/repo.git", "main", None),
        ("git+git@example.com:org/repo.git@feature/x", "git", "git@example.com:org/repo.git", "feature/x", None),
        ("git+file:///srv/repo@refs/pull/1/head#egg=x", "git", "file:///srv/repo", "refs/pull/1/head", None),
    ],
)
def test_accepted_forms_follow_pips_vcs_url_form(source, kind, location, ref, subdirectory) -> None:
    spec = parse_source(source)
    assert (spec.kind, spec.location, spec.ref, spec.subdirectory) == (kind, location, ref, subdirectory)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("", "empty"),
        ("hg+https://example.com/repo", "not a supported form"),
        ("https://example.com/code.zip", r"zip\+ prefix"),
        ("git+https://example.com/repo.git@-upload-pack=x", "not a git branch, tag or commit"),
        ("git+https://example.com/repo.git@a..b", "not a git branch, tag or commit"),
        ("git+https://example.com/repo.git#subdirectory=../up", "'..'"),
        ("git+https://example.com/repo.git#branch=x", "unknown #branch"),
        ("code.zip#sha256=abc", "64 hex digits"),
        ("/abs/src", "absolute path"),
        ("../elsewhere", "'..'"),
        ("src#subdirectory=x", "no #fragment"),
    ],
)
def test_bad_forms_are_refused_with_one_line(source, expected) -> None:
    with pytest.raises(JobConfigError, match=expected) as info:
        parse_source(source)
    assert "\n" not in str(info.value)


def test_a_token_in_a_url_never_reaches_a_message(resolver, job) -> None:
    # Port 1 on the loopback refuses at once: git fails with its own message, which names the URL.
    with pytest.raises(ProvisioningError) as info:
        resolver.resolve("git+https://user:s3cr3t-token@127.0.0.1:1/org/repo.git@main", job)
    assert "s3cr3t-token" not in str(info.value) and "***@127.0.0.1:1" in str(info.value)
    assert parse_source("zip+https://s3cr3t@example.com/c.zip").display == "zip+https://***@example.com/c.zip"


# -- folders -----------------------------------------------------------------------------------


def test_a_folder_is_used_in_place(resolver, job, cache) -> None:
    resolved = resolver.resolve("src/", job)
    assert resolved.root == (job / "src").resolve() and resolved.kind == "folder"
    assert not cache.exists()  # nothing copied


@pytest.mark.parametrize(
    ("source", "expected"),
    [("missing", "does not exist"), ("src/pkg/handlers.py", "not a folder"), ("link", "outside")],
)
def test_a_folder_must_exist_inside_the_job_folder(resolver, job, tmp_path, source, expected) -> None:
    (job / "link").symlink_to(tmp_path)
    with pytest.raises(JobConfigError, match=expected):
        resolver.resolve(source, job)


# -- zip archives ------------------------------------------------------------------------------


def test_zip_is_unpacked_once_and_found_again_without_the_archive(resolver, job, cache, lines) -> None:
    archive = make_zip(
        job / "code.zip",
        {"pkg/__init__.py": "", "pkg/handlers.py": "def f():\n    return 1\n", "run.sh": "#!/bin/sh\n"},
        {"run.sh": stat.S_IFREG | 0o755},
    )
    digest = sha256(archive)
    first = resolver.resolve("code.zip", job)
    assert first.fetched and first.digest == digest
    assert first.root == cache / "sources" / digest
    assert (first.root / "pkg" / "handlers.py").read_text() == "def f():\n    return 1\n"
    assert (first.root / "run.sh").stat().st_mode & 0o111  # the executable bit survives
    assert any(line.startswith("[python_exec] ") and "unpacking 3 entries" in line for line in lines)

    lines.clear()
    second = resolver.resolve("code.zip", job)
    assert (second.root, second.fetched) == (first.root, False)
    assert not any("unpacking" in line for line in lines) and any("cache hit" in line for line in lines)

    archive.unlink()  # with its digest named up front, the archive is not even needed any more
    third = resolver.resolve(f"code.zip#sha256={digest}", job)
    assert (third.root, third.fetched) == (first.root, False)


def test_zip_subdirectory_is_the_source_root(resolver, job) -> None:
    make_zip(job / "code.zip", {"project-main/pkg/m.py": "X = 1\n", "project-main/README": "r"})
    resolved = resolver.resolve("code.zip#subdirectory=project-main", job)
    assert (resolved.root / "pkg" / "m.py").is_file() and resolved.root.name == "project-main"
    with pytest.raises(JobConfigError, match="no folder 'nope'"):
        resolver.resolve("code.zip#subdirectory=nope", job)


def test_a_wrong_digest_is_refused(resolver, job, cache) -> None:
    make_zip(job / "code.zip", {"m.py": "X = 1\n"})
    with pytest.raises(JobConfigError, match="not 0000"):
        resolver.resolve("code.zip#sha256=" + "0" * 64, job)
    assert cache_leftovers(cache) == []


def _lying_header(path: Path) -> Path:
    """A zip whose central directory declares 100 bytes for an entry of 3 MB of zeros."""
    make_zip(path, {"bomb.bin": b"\0" * 3_000_000})
    data = bytearray(path.read_bytes())
    central = data.rindex(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 100)  # uncompressed size in the central directory
    path.write_bytes(bytes(data))
    return path


UNSAFE = {
    "absolute": ({"/etc/evil.py": "x"}, None, "absolute path"),
    "dotdot": ({"pkg/../../evil.py": "x"}, None, "contains '..'"),
    "symlink": ({"link": "/etc/passwd"}, {"link": stat.S_IFLNK | 0o777}, "is a symlink"),
    "device": ({"dev": ""}, {"dev": stat.S_IFCHR | 0o644}, "is a device"),
    "fifo": ({"pipe": ""}, {"pipe": stat.S_IFIFO | 0o644}, "is a FIFO"),
    "twice": ({"a.py": "1", "./a.py": "2"}, None, "appears twice"),
    "declared bomb": ({"big.bin": b"\0" * 2_000_000}, None, "more than 1000000 bytes"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_archive_is_refused_leaving_nothing(cache, job, case) -> None:
    files, modes, expected = UNSAFE[case]
    make_zip(job / "code.zip", {"ok.py": "X = 1\n", **files}, modes)
    resolver = SourceResolver(cache, max_source_bytes=1_000_000)
    with pytest.raises(JobConfigError, match=expected) as info:
        resolver.resolve("code.zip", job)
    assert "\n" not in str(info.value) and "code.zip" in str(info.value)
    assert cache_leftovers(cache) == []
    assert not (cache / "sources").exists()  # refused from the archive's directory: nothing written
    assert not (job / "evil.py").exists() and not Path("/etc/evil.py").exists()


def test_lying_sizes_are_caught_while_unpacking_and_leave_nothing(cache, job) -> None:
    _lying_header(job / "code.zip")
    with pytest.raises(JobConfigError, match=r"bomb.bin") as info:
        SourceResolver(cache, max_source_bytes=1_000_000).resolve("code.zip", job)
    assert "\n" not in str(info.value)
    assert cache_leftovers(cache) == []  # the half-written entry was removed


def test_more_than_100000_entries_is_refused(resolver, cache, job) -> None:
    assert MAX_ENTRIES == 100_000
    with zipfile.ZipFile(job / "many.zip", "w") as zf:
        for i in range(MAX_ENTRIES + 1):
            zf.writestr(f"f{i}", b"")
    with pytest.raises(JobConfigError, match="100001 entries, more than 100000"):
        resolver.resolve("many.zip", job)
    assert cache_leftovers(cache) == []


def test_not_a_zip_is_refused(resolver, job, cache) -> None:
    (job / "code.zip").write_text("not a zip")
    with pytest.raises(JobConfigError, match="not a readable zip archive"):
        resolver.resolve("code.zip", job)
    assert cache_leftovers(cache) == []


def test_entries_that_cannot_coexist_are_refused(resolver, job, cache) -> None:
    make_zip(job / "code.zip", {"a": "file", "a/b.py": "X = 1\n"})
    with pytest.raises(JobConfigError, match=r"'a/b.py' clashes"):
        resolver.resolve("code.zip", job)
    assert cache_leftovers(cache) == []


def test_an_unfinished_entry_is_removed_and_rebuilt(resolver, job, cache, lines) -> None:
    archive = make_zip(job / "code.zip", {"m.py": "X = 1\n"})
    root = resolver.resolve("code.zip", job).root
    (cache / "sources" / f"{sha256(archive)}.provisioned").unlink()  # as if killed before the marker
    (root / "junk").write_text("half-written")
    again = resolver.resolve("code.zip", job)
    assert again.fetched and not (root / "junk").exists() and (root / "m.py").is_file()
    assert any("removing unfinished source" in line for line in lines)


def test_concurrent_resolves_unpack_once(resolver, job, lines) -> None:
    make_zip(job / "code.zip", {f"m{i}.py": "X = 1\n" * 1000 for i in range(200)})
    with ThreadPoolExecutor(4) as pool:
        roots = {r.root for r in pool.map(lambda _: resolver.resolve("code.zip", job), range(4))}
    assert len(roots) == 1
    assert sum("unpacking" in line for line in lines) == 1


# -- zip over HTTP -----------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path):
    """A local HTTP server on 127.0.0.1 serving ``tmp_path/www``; yields (folder, base URL, stop)."""
    www = tmp_path / "www"
    www.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(www), **kwargs)

        def log_message(self, *args):  # keep the test output clean
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    stopped = []

    def stop() -> None:
        if not stopped:
            httpd.shutdown()
            httpd.server_close()
            stopped.append(True)

    yield www, f"http://127.0.0.1:{httpd.server_address[1]}", stop
    stop()


def test_zip_url_is_downloaded_unpacked_and_then_served_from_the_cache(resolver, job, cache, lines, server) -> None:
    www, base, stop = server
    archive = make_zip(www / "code.zip", {"pkg/m.py": "X = 'remote'\n"})
    digest = sha256(archive)
    first = resolver.resolve(f"zip+{base}/code.zip", job)
    assert first.fetched and first.digest == digest
    assert (first.root / "pkg" / "m.py").read_text() == "X = 'remote'\n"
    assert any("downloaded" in line for line in lines)

    lines.clear()  # without a digest the server is asked whether the archive changed: it did not
    second = resolver.resolve(f"zip+{base}/code.zip", job)
    assert not second.fetched and second.root == first.root
    assert any("not modified since the last download (HTTP 304)" in line for line in lines)
    assert not any("downloaded" in line or "unpacking" in line for line in lines)

    stop()
    lines.clear()  # with the digest named, the server is not needed any more
    third = resolver.resolve(f"zip+{base}/code.zip#sha256={digest}", job)
    assert third.root == first.root and not any("downloaded" in line for line in lines)
    record = [name for name in cache_leftovers(cache) if name.startswith("url-")]
    assert cache_leftovers(cache) == sorted([digest, f"{digest}.provisioned", *record]) and len(record) == 1
    # no download left behind; the URL's record keeps its digest and Last-Modified


def test_a_changed_zip_url_is_downloaded_again(resolver, job, lines, server) -> None:
    www, base, _ = server
    archive = make_zip(www / "code.zip", {"m.py": "X = 1\n"})
    first = resolver.resolve(f"zip+{base}/code.zip", job)
    make_zip(archive, {"m.py": "X = 2\n"})
    later = time.time() + 10  # Last-Modified has a one-second resolution: move the change past it
    os.utime(archive, (later, later))
    lines.clear()
    second = resolver.resolve(f"zip+{base}/code.zip", job)
    assert second.fetched and second.digest != first.digest and (second.root / "m.py").read_text() == "X = 2\n"
    assert any("downloaded" in line for line in lines)


def test_zip_url_failures(cache, job, server) -> None:
    www, base, _ = server
    make_zip(www / "big.zip", {"big.bin": b"\1" * 50_000})
    resolver = SourceResolver(cache, max_source_bytes=20_000)
    with pytest.raises(ProvisioningError, match="HTTP 404") as info:
        resolver.resolve(f"zip+{base}/missing.zip", job)
    assert "\n" not in str(info.value)
    with pytest.raises(JobConfigError, match="more than 20000 bytes"):
        resolver.resolve(f"zip+{base}/big.zip", job)
    with pytest.raises(ProvisioningError, match="not 1111"):
        SourceResolver(cache).resolve(f"zip+{base}/big.zip#sha256={'1' * 64}", job)
    assert cache_leftovers(cache) == []


# -- git ---------------------------------------------------------------------------------------


def test_git_tag_and_subdirectory(resolver, job, cache, lines, repo) -> None:
    resolved = resolver.resolve(f"git+{repo['url']}@v1#subdirectory=sub", job)
    assert resolved.digest == repo["v1"] and resolved.fetched
    assert resolved.root == cache / "sources" / repo["v1"] / "sub"
    assert (resolved.root / "mod.py").read_text() == "WHO = 'one'\n"  # the tag, not main
    assert not (cache / "sources" / repo["v1"] / ".git").exists()
    assert f"[python_exec] source git+{repo['url']}@v1: commit {repo['v1']}" in lines


@pytest.mark.parametrize(("ref", "expected"), [("", "main"), ("@main", "main"), ("@v1", "v1")])
def test_git_refs_resolve_to_their_commits(resolver, job, repo, ref, expected) -> None:
    resolved = resolver.resolve(f"git+{repo['url']}{ref}", job)
    assert resolved.digest == repo[expected]
    assert (resolved.root / "sub" / "mod.py").read_text() == ("WHO = 'one'\n" if expected == "v1" else "WHO = 'two'\n")


def test_git_second_resolve_fetches_nothing(resolver, job, lines, repo) -> None:
    first = resolver.resolve(f"git+{repo['url']}@v1", job)
    lines.clear()
    again = resolver.resolve(f"git+{repo['url']}@v1", job)  # the tag is looked up again (it may move)...
    assert (again.root, again.fetched) == (first.root, False)
    assert not any("fetching" in line for line in lines)  # ...but nothing is fetched
    shutil.rmtree(repo["path"])  # the remote is gone: a full commit sha still resolves
    lines.clear()
    by_sha = resolver.resolve(f"git+{repo['url']}@{repo['v1']}#subdirectory=sub", job)
    assert by_sha.root == first.root / "sub" and not by_sha.fetched
    assert f"[python_exec] source git+{repo['url']}@{repo['v1']}: commit {repo['v1']}" in lines
    with pytest.raises(ProvisioningError, match=r"git ls-remote .* failed") as info:
        resolver.resolve(f"git+{repo['url']}@v1", job)  # a tag needs the remote
    assert "\n" not in str(info.value)


def test_git_full_sha_of_an_untagged_commit(resolver, job, repo) -> None:
    resolved = resolver.resolve(f"git+{repo['url']}@{repo['v1']}", job)
    assert resolved.digest == repo["v1"] and (resolved.root / "top.py").is_file()


@pytest.mark.parametrize(
    ("source", "error", "expected"),
    [
        ("@v9", JobConfigError, "'v9' is not a branch or tag"),
        ("@abc1234", JobConfigError, "short sha"),
        ("@v1#subdirectory=nope", JobConfigError, "no folder 'nope'"),
    ],
)
def test_git_bad_refs_and_subdirectories(resolver, job, repo, source, error, expected) -> None:
    with pytest.raises(error, match=expected) as info:
        resolver.resolve(f"git+{repo['url']}{source}", job)
    assert "\n" not in str(info.value)


def test_git_missing_repository_is_a_fetch_failure(resolver, job, tmp_path, cache) -> None:
    with pytest.raises(ProvisioningError, match="does not appear to be a git repository"):
        resolver.resolve(f"git+file://{tmp_path}/nothing-here@main", job)
    assert cache_leftovers(cache) == []


def test_git_tree_over_the_limits_is_refused_before_checkout(cache, job, repo) -> None:
    with pytest.raises(JobConfigError, match="more than 10 bytes"):
        SourceResolver(cache, max_source_bytes=10).resolve(f"git+{repo['url']}@v1", job)
    with pytest.raises(JobConfigError, match="files, more than 1;"):
        SourceResolver(cache, max_entries=1).resolve(f"git+{repo['url']}@v1", job)
    assert cache_leftovers(cache) == []
