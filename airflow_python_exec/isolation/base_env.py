"""The worker's base environment: what a job process (and a launcher) inherits from the worker.

Layer 1 of DESIGN.md's environment rules: the worker's environment minus Airflow's own secrets
(``AIRFLOW__*``, ``AIRFLOW_CONN_*``, ``AIRFLOW_VAR_*``, the task supervisor's private variables),
or with ``inherit_env=False`` only a minimal set. The launchers (``setpriv``, ``bwrap``, uv) run
with this environment, never with variables a job set.
"""

from __future__ import annotations

from collections.abc import Mapping

#: Variables a script keeps with ``inherit_env=False`` (plus every ``LC_*``).
MINIMAL_ENV = ("PATH", "HOME", "LANG", "TZ", "TMPDIR", "USER")
#: Airflow's own secrets and the task supervisor's private variables never reach a script.
HIDDEN_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_", "_AIRFLOW", "__AIRFLOW")
#: Inherited variables that would point a script at another Python than the one we run.
INTERPRETER_VARS = ("VIRTUAL_ENV", "PYTHONHOME")


def base_environment(worker_env: Mapping[str, str], inherit: bool) -> dict[str, str]:
    """Layer 1: the worker's environment without Airflow's secrets, or the minimal set."""
    if inherit:
        env = {k: v for k, v in worker_env.items() if not k.startswith(HIDDEN_PREFIXES) and k not in INTERPRETER_VARS}
    else:
        env = {k: v for k, v in worker_env.items() if k in MINIMAL_ENV or k.startswith("LC_")}
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env
