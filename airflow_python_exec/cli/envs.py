"""``envs list`` and ``envs prune``: the cached environments, their sizes and last use."""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: generate-key needs neither pydantic nor the settings
    pass
from airflow_python_exec.errors import PythonExecError

from .configuration import settings_from_args


def cmd_envs_list(args: argparse.Namespace) -> int:
    from airflow_python_exec.environments import list_environments

    envs = list_environments(settings_from_args(args).cache_dir)
    print(f"{'KEY':<34}{'SIZE':>10}  {'CREATED':<20}{'LAST USED':<20}JOB")
    for env in envs:
        state = "" if env.provisioned else "  (unfinished)"
        print(
            f"{env.key:<34}{_size(env.size_bytes):>10}  {_when(env.created):<20}{_when(env.last_used):<20}"
            f"{env.job_id}{state}"
        )
    from airflow_python_exec.environments.cache_cap import cache_size

    settings = settings_from_args(args)
    size = cache_size(settings.cache_dir, envs)
    cap = f"; max_cache_bytes {_size(settings.max_cache_bytes)}" if settings.max_cache_bytes else ""
    print(
        f"total: {len(envs)} environment{'s' * (len(envs) != 1)}, {_size(size.environments_bytes)}; "
        f"bytecode store: {size.store_entries} entr{'y' if size.store_entries == 1 else 'ies'}, "
        f"{_size(size.store_bytes)}; together {_size(size.total)}{cap}"
    )
    return 0


def cmd_envs_prune(args: argparse.Namespace) -> int:
    from airflow_python_exec.environments import prune

    removed, busy = prune(settings_from_args(args).cache_dir, args.unused_for, dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for env in removed:
        print(f"{verb} {env.key} ({_size(env.size_bytes)}, job {env.job_id}, last used {_when(env.last_used)})")
    for key in busy:
        print(f"kept {key}: in use by a running job")
    print(f"{verb}: {len(removed)}; in use: {len(busy)}")
    from airflow_python_exec.environments.store import prune_store

    try:
        entries = prune_store(settings_from_args(args).cache_dir, dry_run=args.dry_run)
    except OSError as exc:
        raise PythonExecError(
            f"cannot prune the bytecode store ({exc.strerror or exc}); check [python_exec] cache_dir"
        ) from None
    freed = _size(sum(e.size_bytes for e in entries))
    print(f"bytecode: {verb} {len(entries)} unused entries ({freed})")
    return 0


#: ``envs prune`` without ``--unused-for``: environments nobody has used for a week.
DEFAULT_UNUSED_FOR = "7d"


def duration_arg(text: str) -> float:
    """``90``, ``45s``, ``30m``, ``12h``, ``7d`` -> seconds: a finite number, zero or more."""
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    number, unit = (text[:-1], text[-1]) if text[-1:].lower() in units else (text, "s")
    try:
        seconds = float(number) * units[unit.lower()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"duration {text!r} is not like 90, 45s, 30m, 12h or 7d") from None
    # nan compares false with everything and a negative age matches every environment: either would
    # prune all of them.
    if not math.isfinite(seconds) or seconds < 0:
        raise argparse.ArgumentTypeError(
            f"duration {text!r} must be a finite time of zero or more, like 90, 45s, 30m, 12h or 7d"
        )
    return seconds


def _size(n: float) -> str:
    from airflow_python_exec.environments.cache_cap import human_bytes

    return human_bytes(n)


def _when(ts: float) -> str:
    from datetime import datetime

    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M")
