"""Job environments: cached or ephemeral virtual environments built with uv from PEP 751 locks.

Names load on first use (PEP 562): ``envs list``/``prune`` need the registry only, not the
provisioner and the job model it imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_python_exec.environments.provisioner import EnvironmentProvisioner, EnvironmentSpec
    from airflow_python_exec.environments.registry import CachedEnvironment, list_environments, prune

__all__ = ["CachedEnvironment", "EnvironmentProvisioner", "EnvironmentSpec", "list_environments", "prune"]
_WHERE = {
    "EnvironmentProvisioner": "provisioner",
    "EnvironmentSpec": "provisioner",
    "CachedEnvironment": "registry",
    "list_environments": "registry",
    "prune": "registry",
}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
