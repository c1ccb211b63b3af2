"""``airflow-python-exec``: run, validate and provision jobs from the command line, outside Airflow.

Exit status (DESIGN.md): the script's own once it has started; 2 when the job is refused before
it starts; 3 when provisioning its environment fails; 130/143 when stopped by SIGINT/SIGTERM.
A refusal prints one line ``error: <what is wrong and how to fix it>`` on stderr, no traceback.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Sequence
from typing import NoReturn

from airflow_python_exec.errors import PythonExecError

from .configuration import cmd_validate
from .data_items import add_parser as add_data_items_parser
from .envs import DEFAULT_UNUSED_FOR, cmd_envs_list, cmd_envs_prune, duration_arg
from .output import LineWriter, discard, tolerant_output
from .run import cmd_provision, cmd_run, macro_arg, named_arg, param_arg
from .secrets import cmd_encrypt, cmd_generate_key


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the exit status."""
    tolerant_output()
    args = _parser().parse_args(argv)
    # The CLI reads Airflow's configuration but needs no metadata database, ORM or Airflow logging:
    # Airflow's documented opt-out of its import-time initialisation halves the start-up time.
    os.environ.setdefault("_AIRFLOW__AS_LIBRARY", "1")
    try:
        return args.func(args)
    except PythonExecError as exc:
        LineWriter(sys.stderr)(f"error: {exc}")
        return exc.exit_code
    except BrokenPipeError:  # e.g. `envs list | head -1`: stop quietly, as a Unix tool does on SIGPIPE
        discard(sys.stdout)
        return 128 + signal.SIGPIPE


class _Parser(argparse.ArgumentParser):
    """argparse with DESIGN.md's refusal format: one ``error: ...`` line on stderr, exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"error: {self.prog}: {message}; see --help\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="airflow-python-exec", description="Run Python script jobs as Airflow would, from the command line."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="also print informational messages")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run a job folder, a job.json or a .py file",
        epilog="exit status: the script's own; 2 refused before the start; 3 provisioning failed; "
        "124 ended by a resource limit (named on stderr); 130/143 stopped by SIGINT/SIGTERM",
    )
    run.add_argument("path", nargs="?", help="job folder, job.json or .py file (optional with --code)")
    run.add_argument("--macro", action="append", type=macro_arg, metavar="KEY=VALUE", help="set a macro (repeatable)")
    run.add_argument("--dotenv-as-macros", action="store_true", help="convert the job's .env into variables")
    run.add_argument("--refresh", action="store_true", help="use an ephemeral environment, removed afterwards")
    run.add_argument("--install-path", metavar="P", help="override [python_exec] install_path")
    run.add_argument("--cwd", help="working directory, relative to the job folder")
    run.add_argument("--sandbox", choices=("off", "bubblewrap", "auto"), help="override [python_exec] sandbox")
    run.add_argument("--handler", metavar="H", help="call module.path:function (or a function of packageName)")
    run.add_argument(
        "--param",
        action="append",
        type=param_arg,
        metavar="KEY=JSON",
        help="a handler parameter, its value JSON (repeatable; wins over --params-file)",
    )
    run.add_argument("--params-file", metavar="F", help="a JSON object of handler parameters")
    run.add_argument("--code", metavar="FILE.py", help="the handler's source file, run as inline code")
    run.add_argument("--result", metavar="FILE|-", help="write the run's result as JSON (- for stdout)")
    run.add_argument(
        "--input",
        action="append",
        type=named_arg("--input"),
        metavar="NAME=URI",
        help="a handler input: a URI or a path of the job folder, passed as a DataItem (repeatable)",
    )
    run.add_argument(
        "--output",
        action="append",
        type=named_arg("--output", optional=True),
        metavar="NAME[:KIND][=URI]",
        help="a declared output, KIND table, artifact or result (default: the value's); replaces "
        "function.outputs; repeatable",
    )
    run.add_argument("--data-store", metavar="URI", help="override [python_exec] data_store")
    for flag, example in (("memory", "512Mi"), ("cpu", "1.5"), ("pids", "256"), ("tmp", "1Gi"), ("timeout", "30m")):
        run.add_argument(f"--{flag}", metavar=example, help=f"resource limit {flag} for this run (see Resource limits)")
    run.set_defaults(func=cmd_run)

    validate = sub.add_parser("validate", help="check the Python installation, print interpreter and version")
    validate.add_argument("--install-path", metavar="P", help="override [python_exec] install_path")
    validate.set_defaults(func=cmd_validate)

    encrypt = sub.add_parser("encrypt", help="read a value on stdin, print a Fernet token for a secure macro")
    encrypt.set_defaults(func=cmd_encrypt)

    generate = sub.add_parser("generate-key", help="print a new Fernet key")
    generate.set_defaults(func=cmd_generate_key)

    provision = sub.add_parser("provision", help="build a job's cached environment without running it")
    provision.add_argument("path")
    provision.add_argument("--install-path", metavar="P", help="override [python_exec] install_path")
    provision.set_defaults(func=cmd_provision)

    envs = sub.add_parser("envs", help="cached environments").add_subparsers(dest="envs_command", required=True)
    envs.add_parser("list", help="key, size, created, last used and the job that built it").set_defaults(
        func=cmd_envs_list
    )
    prune = envs.add_parser("prune", help="remove environments unused for a while (never one in use)")
    prune.add_argument(
        "--unused-for",
        type=duration_arg,
        default=duration_arg(DEFAULT_UNUSED_FOR),
        metavar="DURATION",
        help=f"e.g. 7d, 12h, 30m, 45s (default {DEFAULT_UNUSED_FOR})",
    )
    prune.add_argument("--dry-run", action="store_true", help="only say what would be removed")
    prune.set_defaults(func=cmd_envs_prune)
    add_data_items_parser(sub)
    return parser


if __name__ == "__main__":
    sys.exit(main())
