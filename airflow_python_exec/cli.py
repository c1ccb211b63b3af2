"""``airflow-python-exec``: run, validate and provision jobs from the command line, outside Airflow.

Exit status (DESIGN.md): the script's own once it has started; 2 when the job is refused before
it starts; 3 when provisioning its environment fails; 130/143 when stopped by SIGINT/SIGTERM.
A refusal prints one line ``error: <what is wrong and how to fix it>`` on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Sequence

from airflow_python_exec import crypto
from airflow_python_exec.errors import PythonExecError
from airflow_python_exec.settings import EngineSettings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    args = _parser().parse_args(argv)
    # The CLI reads Airflow's configuration but needs no metadata database, ORM or Airflow logging:
    # Airflow's documented opt-out of its import-time initialisation halves the start-up time.
    os.environ.setdefault("_AIRFLOW__AS_LIBRARY", "1")
    try:
        return args.func(args)
    except PythonExecError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code


def _settings(args: argparse.Namespace) -> EngineSettings:
    settings = EngineSettings.from_airflow_config(install_path=getattr(args, "install_path", None))
    # Importing Airflow's configuration installs Airflow's own log format; the CLI wants plain
    # "warning: ..." lines on stderr, the script's output alone on stdout.
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s: %(message)s",
        stream=sys.stderr,
        force=True,
    )
    return settings


def _macro(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--macro {text!r} has no '='; write KEY=VALUE")
    return key, value


def cmd_run(args: argparse.Namespace) -> int:
    from airflow_python_exec.service import PythonExecutionService

    service = PythonExecutionService(_settings(args))
    received: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        received.append(signum)
        service.stop()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        service.init()
        result = service.run(
            args.path,
            macros=dict(args.macro) if args.macro else None,
            dotenv_as_macros=args.dotenv_as_macros,
            refresh=True if args.refresh else None,
            cwd=args.cwd,
            on_line=lambda line: print(line, flush=True),
        )
    finally:
        service.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 + received[0] if received else result.exit_code


def cmd_validate(args: argparse.Namespace) -> int:
    from airflow_python_exec.validator import PythonEngineValidator

    interpreter = PythonEngineValidator(_settings(args)).validate()
    print(f"{interpreter.path} (Python {interpreter.version})")
    return 0


def cmd_encrypt(args: argparse.Namespace) -> int:
    value = sys.stdin.read()
    value = value[:-1] if value.endswith("\n") else value
    print(crypto.encrypt(value, _settings(args).fernet_keys()))
    return 0


def cmd_generate_key(_args: argparse.Namespace) -> int:
    print(crypto.generate_key())
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="airflow-python-exec", description="Run Python script jobs as Airflow would, from the command line."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also print informational messages")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a job folder, a job.json or a .py file")
    run.add_argument("path")
    run.add_argument("--macro", action="append", type=_macro, metavar="KEY=VALUE", help="set a macro (repeatable)")
    run.add_argument("--dotenv-as-macros", action="store_true", help="convert the job's .env into variables")
    run.add_argument("--refresh", action="store_true", help="use an ephemeral environment, removed afterwards")
    run.add_argument("--install-path", metavar="P", help="override [python_exec] install_path")
    run.add_argument("--cwd", help="working directory, relative to the job folder")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check the Python installation, print interpreter and version")
    validate.add_argument("--install-path", metavar="P", help="override [python_exec] install_path")
    validate.set_defaults(func=cmd_validate)

    encrypt = sub.add_parser("encrypt", help="read a value on stdin, print a Fernet token for a secure macro")
    encrypt.set_defaults(func=cmd_encrypt)

    generate = sub.add_parser("generate-key", help="print a new Fernet key")
    generate.set_defaults(func=cmd_generate_key)
    return parser


if __name__ == "__main__":
    sys.exit(main())
