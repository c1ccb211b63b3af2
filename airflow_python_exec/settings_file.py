"""Read ``[python_exec]`` without importing Airflow, where that gives exactly what Airflow would.

Importing ``airflow.configuration`` takes one to two seconds (it loads Airflow's configuration
description, the providers' defaults and more); the command line and the Python API only need the
few ``[python_exec]`` options. :func:`read_python_exec` reads them the way Airflow's
``conf.get("python_exec", option)`` does, from the same two places, and returns ``None`` (the
caller then asks Airflow itself) whenever it could differ from Airflow.

The fast path applies only when all of these hold:

- ``airflow.configuration`` is not imported yet in this process (once it is, asking it is cheap
  and exact, so it is always used);
- the configuration file (``$AIRFLOW_CONFIG``, else ``$AIRFLOW_HOME/airflow.cfg``, ``AIRFLOW_HOME``
  defaulting to ``~/airflow``) is missing (Airflow would write a default one that sets no
  ``[python_exec]`` option: only the variables and the defaults count, and no file is written), or
  parses with Python's ``configparser`` configured as Airflow configures it: case-preserving option
  names, ``%(name)s`` interpolation (``BasicInterpolation``), duplicate options refused;
- no option of ``[python_exec]`` (or ``[DEFAULT]``) in the file ends in ``_cmd`` or ``_secret``,
  and no ``AIRFLOW__PYTHON_EXEC__*_CMD`` / ``*_SECRET`` variable is set (Airflow runs a command or
  asks a secrets backend for those);
- no secrets backend is configured (``[secrets] backend`` in the file or
  ``AIRFLOW__SECRETS__BACKEND``), Airflow's unit-test mode is off, and no ``[python_exec]`` value
  contains ``%`` (its interpolation is then left to Airflow).

Values are then taken as Airflow takes them: ``AIRFLOW__PYTHON_EXEC__<OPTION>`` first, then the
file, each passed through Airflow's ``expand_env_var`` (``$VAR`` and ``~`` expanded until stable);
options set in neither place keep their defaults (:data:`airflow_python_exec.settings.OPTIONS`,
the same that ``get_provider_info()`` declares to Airflow).

``fernet_key``: when ``[python_exec] fernet_key`` is unset or blank, the fallback ``[core]
fernet_key`` is not read here: Airflow generates, runs (``fernet_key_cmd``) or fetches
(``fernet_key_secret``) that one, so it is asked of Airflow's configuration, and only when a key
is needed (a secure macro to decrypt, ``encrypt``); see :meth:`EngineSettings.fernet_keys`.
"""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterable

#: The section of Airflow's configuration that holds the engine's options (read here and by
#: :mod:`airflow_python_exec.settings`).
SECTION = "python_exec"
_ENV_PREFIX = "AIRFLOW__PYTHON_EXEC__"
_TRUE = ("t", "true", "1")


def expand_env_var(value: str) -> str:
    """Airflow's ``expand_env_var``: ``expandvars`` and ``expanduser`` until nothing changes."""
    while True:
        expanded = os.path.expanduser(os.path.expandvars(value))
        if expanded == value:
            return expanded
        value = expanded


def config_file() -> str:
    """The configuration file Airflow reads (``airflow.configuration.get_airflow_config``)."""
    if "AIRFLOW_CONFIG" in os.environ:
        return expand_env_var(os.environ["AIRFLOW_CONFIG"])
    return os.path.join(expand_env_var(os.environ.get("AIRFLOW_HOME", "~/airflow")), "airflow.cfg")


def read_python_exec(options: Iterable[str]) -> dict[str, str] | None:
    """The ``[python_exec]`` ``options`` that are set, as Airflow would return them, or ``None``
    when only Airflow can tell (see the module's docstring for when)."""
    env = os.environ
    if any(k.startswith(_ENV_PREFIX) and k.endswith(("_CMD", "_SECRET")) for k in env):
        return None
    if env.get("AIRFLOW__SECRETS__BACKEND") or _truthy(env.get("AIRFLOW__CORE__UNIT_TEST_MODE")):
        return None
    path = config_file()
    parser = configparser.ConfigParser(interpolation=configparser.BasicInterpolation(), strict=True)
    parser.optionxform = str  # type: ignore[assignment, method-assign]  # Airflow keeps the case
    try:
        with open(path, encoding=None) as f:  # Airflow reads with the locale's encoding, too
            parser.read_file(f, source=path)
    except FileNotFoundError:
        # No file (a laptop, a CI job): Airflow would write its default one, which sets no
        # [python_exec] option and no secrets backend, so the variables and defaults are the answer.
        pass
    except (OSError, UnicodeError, configparser.Error):
        return None  # unreadable or invalid: Airflow decides (and says what is wrong)
    try:
        if parser.has_option("secrets", "backend") and parser.get("secrets", "backend", raw=True).strip():
            return None
        if parser.has_option("core", "unit_test_mode") and _truthy(parser.get("core", "unit_test_mode", raw=True)):
            return None
        own = parser.options(SECTION) if parser.has_section(SECTION) else list(parser.defaults())
        if any(o.endswith(("_cmd", "_secret")) for o in own):
            return None
        values: dict[str, str] = {}
        for option in options:
            env_name = _ENV_PREFIX + option.upper()
            if env_name in env:
                values[option] = expand_env_var(env[env_name]) if env[env_name] else env[env_name]
            elif parser.has_option(SECTION, option):
                raw = parser.get(SECTION, option, raw=True)
                if "%" in raw:
                    return None
                value = parser.get(SECTION, option)
                values[option] = expand_env_var(value) if value else value
    except (configparser.Error, ValueError):
        return None
    return values


def _truthy(value: str | None) -> bool:
    if value is None:
        return False
    return value.split("#")[0].strip().lower() in _TRUE
