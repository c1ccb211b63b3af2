"""Job environments: cached or ephemeral virtual environments built with uv from PEP 751 locks."""

from airflow_python_exec.environments.provisioner import EnvironmentProvisioner, EnvironmentSpec
from airflow_python_exec.environments.registry import CachedEnvironment, list_environments, prune

__all__ = ["CachedEnvironment", "EnvironmentProvisioner", "EnvironmentSpec", "list_environments", "prune"]
