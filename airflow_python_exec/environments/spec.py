"""What an environment is built from (:class:`EnvironmentSpec`), and its ``.provisioned`` marker."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from .build_once import write_marker


@dataclass(frozen=True)
class EnvironmentSpec:
    """What an environment is built from, resolved and checked.

    :ivar python: base interpreter executable; :ivar version: its full version;
    :ivar lock: the PEP 751 lock file or ``None``; :ivar extras: local extra dependencies;
    :ivar key: the cache key (see :mod:`.key`);
    :ivar requirements: normalized requirements (``pythonEnv.requirements`` or PEP 723
        ``dependencies``) resolved into a lock inside the environment, or ``None``.
    """

    python: Path
    version: str
    lock: Path | None
    extras: tuple[Path, ...] = ()
    key: str = field(default="", compare=False)
    requirements: tuple[str, ...] | None = None
    #: Each extra's :func:`.key.content_digest`, as in the key: the build checks its copy against it.
    extra_digests: tuple[str, ...] = field(default=(), compare=False)


def write_environment_marker(
    marker: Path, job_id: str, spec: EnvironmentSpec, packages: tuple[str, ...], seconds: float
) -> None:
    """Write the environment's marker (``<env>/.provisioned``, atomically, last): what it was built
    from and holds, and how long the build took (``seconds``)."""
    content = {
        "key": spec.key,
        "job_id": job_id,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "provisioning_s": round(seconds, 3),
        "python": str(spec.python),
        "python_version": spec.version,
        "lock": str(spec.lock) if spec.lock else None,
        "requirements": list(spec.requirements) if spec.requirements is not None else None,
        "local_extra_deps": [str(p) for p in spec.extras],
        "installed": [*packages, *(p.name for p in spec.extras)],
    }
    write_marker(marker, content)
