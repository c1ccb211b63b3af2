"""Checks on a PEP 751 lock file before uv sees it, so a bad lock fails with one clear line."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from airflow_python_exec.errors import ProvisioningError


#: PEP 751: ``pylock.toml`` or ``pylock.<name>.toml`` (name non-empty, no dots).
LOCK_NAME = re.compile(r"pylock(\.[^.]+)?\.toml\Z")


def check_lock_file(lock: Path) -> None:
    """Check that ``lock`` exists and is named per PEP 751 (cheap: no read, fit for every run).

    :raises ProvisioningError: with the file and what is wrong with it.
    """
    if lock.exists() and not lock.is_file():  # a FIFO or a device would block or never end
        raise ProvisioningError(f"lock file {lock} is not a regular file; replace it with the PEP 751 lock")
    if not lock.is_file():
        raise ProvisioningError(f"lock file {lock} does not exist; add it to the job folder or fix pythonEnv.pylock")
    if not LOCK_NAME.match(lock.name):
        raise ProvisioningError(
            f"lock file {lock.name!r} is not a PEP 751 name; rename it to pylock.toml or pylock.<name>.toml"
        )


def locked_packages(lock: Path) -> tuple[str, ...]:
    """Parse ``lock`` and check it is a version-1 PEP 751 lock; only needed when building.

    A cache hit never parses the lock: its key is the lock's digest, and an environment exists only
    for content that parsed and installed before.

    :returns: the ``name==version`` of each ``[[packages]]`` entry it lists.
    :raises ProvisioningError: not valid TOML, not a PEP 751 lock, or an unsupported lock-version.
    """
    if sys.version_info >= (3, 11):  # imported here: the cache-hit path never needs a TOML parser
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib

    try:
        data = tomllib.loads(lock.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProvisioningError(f"lock file {lock} is not valid TOML ({exc}); regenerate it") from None
    version = str(data.get("lock-version", ""))
    if not version or not isinstance(data.get("packages"), list):
        raise ProvisioningError(
            f"lock file {lock} is not a PEP 751 lock (no lock-version or packages); generate it with "
            "uv pip compile --format pylock.toml"
        )
    if version.split(".")[0] != "1":
        raise ProvisioningError(f"lock file {lock} has lock-version {version}; only version 1 locks are supported")
    return tuple(f"{p.get('name', '?')}=={p.get('version', '?')}" for p in data["packages"] if isinstance(p, dict))
