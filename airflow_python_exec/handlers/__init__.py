"""Handler jobs ("functions as jobs"): the contract between the service and the bootstrap.

The service runs ``<job's python> <BOOTSTRAP>`` (no other argument: parameters never travel in argv)
in the job's environment, with these variables added to it:

- ``PYTHON_EXEC_SOURCE_ROOT`` (required): the folder put first on ``sys.path`` (a resolved
  source, see :mod:`airflow_python_exec.handlers.sources`).
- ``PYTHON_EXEC_HANDLER`` (required): ``module.path:function`` (the function may be dotted, e.g.
  ``Class.method``), or a bare ``function`` of the main file.
- ``PYTHON_EXEC_MAIN_FILE`` (for a bare handler): the ``.py`` file (``packageName``) it lives in;
  loaded as a module, so its ``if __name__ == "__main__"`` block does not run.
- ``PYTHON_EXEC_PARAMS_FILE`` (optional): a JSON object, the keyword arguments (default: none).
- ``PYTHON_EXEC_CONTEXT_FILE`` (optional): a JSON object passed as ``context`` (default ``{}``).
- ``PYTHON_EXEC_RESULT_FILE`` (required): where the JSON-encoded return value is written.
- ``PYTHON_EXEC_ERROR_FILE`` (optional): where a failure is described for the task's message.
- ``PYTHON_EXEC_DATA_FILE`` (optional): the run's data items (inputs, declared outputs, the folder
  outputs are written to); read by :mod:`airflow_python_exec.handlers.job_data`, copied beside the
  bootstrap as ``python_exec_data.py``.

The bootstrap removes the variables only it needs from ``os.environ`` before importing anything of
the job; ``PYTHON_EXEC_RESULT_FILE`` stays, as for every run. Exit status: :data:`EXIT_OK` after
the result is written; :data:`EXIT_FAILED` when the handler raised (traceback on stderr) or returned
a value JSON cannot encode; :data:`EXIT_REFUSED` when the handler cannot be called as asked (bad
handler name, module or function not found, parameters the signature cannot bind), decided before
the call. A handler that calls ``sys.exit(n)`` exits with ``n`` (so ``runtimeConfig.exitCodes`` can
map it) and writes no result. The error file holds ``{"type", "message", "kind"}`` with ``kind``
``"exception"``, ``"result"`` or ``"refused"``; read it with
:func:`airflow_python_exec.handlers.results.read_handler_error`.

This module imports nothing heavy: the service and the CLI may import it on every run.
"""

from __future__ import annotations

from pathlib import Path

#: The stdlib-only script the job's interpreter runs.
BOOTSTRAP = Path(__file__).with_name("bootstrap.py")
#: The stdlib-only data items module the bootstrap loads (``DataItem``, ``run``, outputs).
DATA_MODULE = Path(__file__).with_name("job_data.py")
#: Its name beside the bootstrap in a run's private folder.
DATA_MODULE_NAME = "python_exec_data.py"
#: The stdlib-only ``digitalhub_runtime_python`` module (the data platform's ``handler`` decorator).
PLATFORM_MODULE = Path(__file__).with_name("platform_runtime.py")
#: The folder beside the bootstrap holding it; the bootstrap appends it to ``sys.path``.
PLATFORM_FOLDER = "platform"

SOURCE_ROOT_ENV = "PYTHON_EXEC_SOURCE_ROOT"
HANDLER_ENV = "PYTHON_EXEC_HANDLER"
MAIN_FILE_ENV = "PYTHON_EXEC_MAIN_FILE"
PARAMS_FILE_ENV = "PYTHON_EXEC_PARAMS_FILE"
CONTEXT_FILE_ENV = "PYTHON_EXEC_CONTEXT_FILE"
RESULT_FILE_ENV = "PYTHON_EXEC_RESULT_FILE"
ERROR_FILE_ENV = "PYTHON_EXEC_ERROR_FILE"
DATA_FILE_ENV = "PYTHON_EXEC_DATA_FILE"

#: Removed from ``os.environ`` by the bootstrap before the job's code runs.
BOOTSTRAP_ONLY_ENV = (
    SOURCE_ROOT_ENV,
    HANDLER_ENV,
    MAIN_FILE_ENV,
    PARAMS_FILE_ENV,
    CONTEXT_FILE_ENV,
    ERROR_FILE_ENV,
    DATA_FILE_ENV,
)

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2

__all__ = [
    "BOOTSTRAP",
    "BOOTSTRAP_ONLY_ENV",
    "CONTEXT_FILE_ENV",
    "DATA_FILE_ENV",
    "DATA_MODULE",
    "DATA_MODULE_NAME",
    "ERROR_FILE_ENV",
    "EXIT_FAILED",
    "EXIT_OK",
    "EXIT_REFUSED",
    "HANDLER_ENV",
    "MAIN_FILE_ENV",
    "PARAMS_FILE_ENV",
    "PLATFORM_FOLDER",
    "PLATFORM_MODULE",
    "RESULT_FILE_ENV",
    "SOURCE_ROOT_ENV",
]
