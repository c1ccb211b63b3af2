"""What every command shares: the settings from ``[python_exec]`` and the overrides given, and
``validate``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # imported where used: generate-key needs neither pydantic nor the settings
    from airflow_python_exec.settings import EngineSettings


def settings_from_args(args: argparse.Namespace) -> EngineSettings:
    """``[python_exec]`` with the command's ``--install-path``, ``--sandbox`` and ``--data-store``
    applied; also sets the CLI's plain ``warning: ...`` log lines on stderr (``-v``: info too).

    :raises PythonExecError: an option or override with a value of the wrong type.
    """
    from airflow_python_exec.settings import EngineSettings

    settings = EngineSettings.from_airflow_config(
        install_path=getattr(args, "install_path", None),
        sandbox=getattr(args, "sandbox", None),
        data_store=getattr(args, "data_store", None),
    )
    # Importing Airflow's configuration installs Airflow's own log format; the CLI wants plain
    # "warning: ..." lines on stderr, the script's output alone on stdout.
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    return settings


def cmd_validate(args: argparse.Namespace) -> int:
    from airflow_python_exec.validator import PythonEngineValidator

    interpreter = PythonEngineValidator(settings_from_args(args)).validate()
    print(f"{interpreter.path} (Python {interpreter.version})")
    return 0
