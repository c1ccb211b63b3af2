"""Tiny wheels and PEP 751 locks made on the spot, so environment tests need no network."""

from __future__ import annotations

import base64
import hashlib
import shutil
import subprocess
import zipfile
from pathlib import Path

from airflow_python_exec.environments.uv import uv_binary


def _record(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_wheel(
    outdir: Path,
    name: str,
    version: str = "1.0",
    *,
    deps: tuple[str, ...] = (),
    script: tuple[str, str] | None = None,
    module: str = "VALUE = 42\n",
    tag: str = "py3-none-any",
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write ``<name>-<version>-<tag>.whl`` holding module ``<name>`` (byte-identical on rewrite).

    :param script: ``(console script name, "module:function")`` to declare as an entry point.
    :param tag: the wheel's tag, e.g. ``cp39-cp39-manylinux_2_17_x86_64`` for a wheel that only that
        Python and platform can install (the module stays pure Python; only installers read the tag).
    :param extra_files: more files for the wheel's root (``name.pth``...), path -> content.
    """
    norm = name.replace("-", "_").lower()
    info = f"{norm}-{version}.dist-info"
    files = {f"{norm}.py": module.encode(), **(extra_files or {})}
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {d}\n" for d in deps)
    ).encode()
    purelib = "true" if tag.endswith("-none-any") else "false"
    files[f"{info}/WHEEL"] = f"Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: {purelib}\nTag: {tag}\n".encode()
    if script:
        files[f"{info}/entry_points.txt"] = f"[console_scripts]\n{script[0]} = {script[1]}\n".encode()
    files[f"{info}/RECORD"] = (
        "\n".join([_record(p, d) for p, d in files.items()] + [f"{info}/RECORD,,"]) + "\n"
    ).encode()
    outdir.mkdir(parents=True, exist_ok=True)
    path = outdir / f"{norm}-{version}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name_in_zip, data in files.items():
            entry = zipfile.ZipInfo(name_in_zip, date_time=(1980, 1, 1, 0, 0, 0))
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = 0o644 << 16
            z.writestr(entry, data)
    return path


def write_lock(
    job_dir: Path,
    wheels: Path,
    requirements: list[str],
    name: str = "pylock.toml",
    *,
    universal: bool = False,
    python_version: str = "3.10",
) -> Path:
    """Resolve ``requirements`` against the local ``wheels`` folder into ``job_dir/<name>`` (offline);
    ``wheels`` outside ``job_dir`` is copied into ``job_dir/wheels`` first (the lock names each wheel
    by its ``file:`` URL, which a job may only name inside its folder).

    :param universal: ``--universal``: one lock for every Python from ``python_version`` and every
        platform, each package entry carrying the marker under which it applies, as the examples' locks
        are made. Otherwise the lock is for ``python_version`` (uv's ``--python-version``) alone.
    """
    job_dir.mkdir(parents=True, exist_ok=True)
    if not wheels.resolve().is_relative_to(job_dir.resolve()):
        # The lock names its wheels by file: URL, which the Reach rule allows only in the job folder.
        shutil.copytree(wheels, job_dir / "wheels", dirs_exist_ok=True)
        wheels = job_dir / "wheels"
    req = job_dir / "requirements.in"
    req.write_text("\n".join(requirements) + "\n")
    lock = job_dir / name
    subprocess.run(
        [
            uv_binary(),
            "pip",
            "compile",
            "--quiet",
            "--format",
            "pylock.toml",
            "--offline",
            "--no-index",
            "--find-links",
            str(wheels),
            "--python-version",
            python_version,
            *(["--universal"] if universal else []),
            str(req),
            "-o",
            str(lock),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return lock
