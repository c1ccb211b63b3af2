"""Call one handler of a handler job, under the job's own interpreter (Python 3.10-3.13).

Standard library only: this file runs in the job's environment, which has neither Airflow nor
airflow_python_exec, and it never imports either. The service starts it as
``<python> bootstrap.py`` with its inputs in environment variables and files (the contract is
written in ``airflow_python_exec/handlers/__init__.py``, whose constants these names must equal):

1. the source root goes first on ``sys.path`` (in place of this file's own folder);
2. the handler is imported (the data platform's ``digitalhub_runtime_python`` is importable, last
   on ``sys.path``): ``module.path:function``, or a bare ``function`` of the main file. The
   module must be the job's own code: before anything is imported, its top-level package is looked
   up (``importlib.util.find_spec``) and must come from the source root (or the main file's folder),
   or from the job's own virtual environment's site-packages; never a standard-library or built-in
   module (``os:system``, ``runpy:run_module``), nor the base interpreter's packages. The function
   found must be defined there too (``app:os.system`` reaches ``os``'s ``system``: refused). Exit 2;
3. the parameters (a JSON object) are bound to its signature with ``inspect.signature().bind``;
   ``context`` is added only when the signature names a ``context`` parameter (not for a bare
   ``**kwargs``, so a handler never receives a key it did not ask for); what cannot bind is refused
   before the call, naming the signature: exit 2;
4. the handler is called (a coroutine is run with ``asyncio.run``); its return value, JSON-encoded,
   goes to the result file: exit 0. A value JSON cannot encode (NaN and infinities included), or
   nested deeper than :data:`MAX_JSON_DEPTH` levels: one line naming its type, exit 1. An
   exception: its traceback on stderr, exit 1. Either failure is also described in the error file
   for the task's failure message.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import os
import sys
import sysconfig
import traceback

SOURCE_ROOT_ENV = "PYTHON_EXEC_SOURCE_ROOT"
HANDLER_ENV = "PYTHON_EXEC_HANDLER"
MAIN_FILE_ENV = "PYTHON_EXEC_MAIN_FILE"
PARAMS_FILE_ENV = "PYTHON_EXEC_PARAMS_FILE"
CONTEXT_FILE_ENV = "PYTHON_EXEC_CONTEXT_FILE"
RESULT_FILE_ENV = "PYTHON_EXEC_RESULT_FILE"
ERROR_FILE_ENV = "PYTHON_EXEC_ERROR_FILE"
DATA_FILE_ENV = "PYTHON_EXEC_DATA_FILE"
BOOTSTRAP_ONLY_ENV = (
    SOURCE_ROOT_ENV,
    HANDLER_ENV,
    MAIN_FILE_ENV,
    PARAMS_FILE_ENV,
    CONTEXT_FILE_ENV,
    ERROR_FILE_ENV,
    DATA_FILE_ENV,
)
#: The data items module (``handlers/job_data.py``), copied beside this file by the service.
DATA_MODULE_NAME = "python_exec_data.py"
#: The folder beside this file holding ``digitalhub_runtime_python.py`` (``handlers/platform_runtime.py``).
PLATFORM_FOLDER = "platform"
#: Where the platform's ``@handler(outputs=[...])`` records the outputs on the function.
OUTPUTS_ATTRIBUTE = "__python_exec_outputs__"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_REFUSED = 2
PREFIX = "[python_exec]"
#: airflow_python_exec.isolation.json_limits.MAX_JSON_DEPTH: the worker refuses a result nested deeper.
MAX_JSON_DEPTH = 100
#: Longest message written to the error file, in characters (the worker shows the first 1000).
MAX_ERROR_CHARS = 20_000


class Refused(Exception):
    """The handler cannot be called as asked; decided before the call (exit 2)."""


def main() -> int:
    """Run the handler named by the environment; return the exit status."""
    inputs = {name: os.environ.pop(name, "") for name in BOOTSTRAP_ONLY_ENV}
    result_file = os.environ.get(RESULT_FILE_ENV, "")
    error_file = inputs[ERROR_FILE_ENV]
    try:
        if not inputs[HANDLER_ENV] or not inputs[SOURCE_ROOT_ENV] or not result_file:
            raise Refused(f"{HANDLER_ENV}, {SOURCE_ROOT_ENV} and {RESULT_FILE_ENV} must be set")
        set_sys_path(inputs[SOURCE_ROOT_ENV], inputs[MAIN_FILE_ENV])
        params = read_object(inputs[PARAMS_FILE_ENV], "parameters")
        context = read_object(inputs[CONTEXT_FILE_ENV], "context")
        data = load_data(inputs[DATA_FILE_ENV])
        function = load_handler(inputs[HANDLER_ENV], inputs[SOURCE_ROOT_ENV], inputs[MAIN_FILE_ENV])
        if data is not None:
            data.declare(getattr(function, OUTPUTS_ATTRIBUTE, None))
            problem = data.check_engines()  # before the call: a long handler never runs for nothing
            if problem:
                raise Refused(problem)
        args, kwargs = bind(function, inputs[HANDLER_ENV], params, context, data)
    except Refused as exc:
        return fail(EXIT_REFUSED, "Refused", str(exc), "refused", error_file)
    except Exception as exc:  # noqa: BLE001 - the job's own module raised while being imported
        return raised(exc, error_file)
    try:
        value = call(function, args, kwargs)
    except Exception as exc:  # noqa: BLE001 - the handler's failure is the result; SystemExit keeps its meaning
        return raised(exc, error_file)
    if data is not None:
        try:  # outputs are written by this process: the worker needs no pandas
            value = data.store(value)
        except data.NotStorable as exc:
            return fail(EXIT_FAILED, "TypeError", str(exc), "result", error_file)
        except Exception as exc:  # noqa: BLE001 - writing a DataFrame failed (e.g. no parquet engine installed)
            return raised(exc, error_file)
    try:
        text = json.dumps(value, allow_nan=False, default=_not_json)
        if _depth(text) > MAX_JSON_DEPTH:
            raise ValueError(f"it is nested too deeply (deeper than {MAX_JSON_DEPTH} levels)")
    except RecursionError:
        return fail(
            EXIT_FAILED,
            "TypeError",
            "the handler's return value cannot be encoded as JSON: it is nested too deeply "
            f"(deeper than {MAX_JSON_DEPTH} levels); flatten it",
            "result",
            error_file,
        )
    except (TypeError, ValueError) as exc:
        return fail(
            EXIT_FAILED,
            "TypeError",
            f"the handler's return value cannot be encoded as JSON: {exc}; "
            "return a dict, list, str, int, float, bool or None",
            "result",
            error_file,
        )
    write_atomically(result_file, text)
    return EXIT_OK


def set_sys_path(root: str, main_file: str) -> None:
    """Put the source root first on ``sys.path``, where Python put this file's own folder.

    The main file's folder follows it, so a bare handler's sibling modules import as they would
    when the file runs as a script. The data platform's module (``digitalhub_runtime_python``) comes
    last, from :data:`PLATFORM_FOLDER` beside this file.
    """
    here = os.path.dirname(os.path.realpath(__file__))
    if sys.path and sys.path[0] and os.path.realpath(sys.path[0]) == here:
        del sys.path[0]  # never let the job import this package's files
    sys.path.insert(0, os.path.abspath(root))
    if main_file:
        folder = os.path.dirname(os.path.abspath(main_file))
        if folder not in sys.path:
            sys.path.insert(1, folder)
    platform = os.path.join(here, PLATFORM_FOLDER)
    if os.path.isdir(platform):
        sys.path.append(platform)


def read_object(path: str, what: str) -> dict:
    """The JSON object in ``path`` (``{}`` when no file is given)."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError) as exc:
        raise Refused(f"the {what} file {path} cannot be read as JSON ({exc})") from None
    if not isinstance(value, dict):
        raise Refused(f"the {what} must be a JSON object, not {type(value).__name__}")
    return value


def load_handler(handler: str, root: str, main_file: str):
    """Import ``module.path:function`` from the source root, or ``function`` from the main file."""
    module_name, colon, attribute = handler.strip().rpartition(":")
    if not _dotted(attribute) or (colon and not _dotted(module_name)):
        raise Refused(f"handler {handler!r} is not module.path:function or a function name")
    if colon:
        check_origin(handler, module_name.split(".")[0], root, main_file)
        module = import_module(module_name, root)
    elif main_file:
        module = load_main(main_file)
    else:
        raise Refused(f"handler {handler!r} has no module: write module.path:function, or give the main file")
    target = module
    for part in attribute.split("."):
        if part.startswith("__") and part.endswith("__"):  # __builtins__, __loader__: the interpreter's
            raise Refused(f"handler {handler!r} names {part!r}; name a function of the job's own code")
        if not hasattr(target, part):
            where = module_name or os.path.basename(main_file)
            raise Refused(f"handler {handler!r}: {where} has no {attribute!r}; check the function's name")
        target = getattr(target, part)
        if inspect.ismodule(target):  # app:os.system passes through a module app imported
            check_origin(handler, target.__name__.split(".")[0], root, main_file)
    if not callable(target):
        raise Refused(f"handler {handler!r} is a {type(target).__name__}, not a function")
    defined_in = getattr(inspect.getmodule(target), "__name__", None) or getattr(target, "__module__", None)
    if not defined_in:  # a method of a built-in object ("".join): defined by no module of the job
        raise Refused(f"handler {handler!r} is a built-in, not a function of the job's own code")
    if defined_in != module.__name__:  # a name the module imported from elsewhere (from os import system)
        check_origin(handler, str(defined_in).split(".")[0], root, main_file)
    return target


def allowed_roots(root: str, main_file: str) -> list[str]:
    """Where a handler's code may come from: the source root, the main file's folder and, when the
    job runs in a virtual environment of its own, that environment's site-packages."""
    roots = [root] + ([os.path.dirname(os.path.abspath(main_file))] if main_file else [])
    if sys.prefix != sys.base_prefix:  # the base interpreter's packages may be the worker's own
        paths = sysconfig.get_paths()
        roots += [paths["purelib"], paths["platlib"]]
    return [os.path.realpath(r) for r in roots]


def check_origin(handler: str, top: str, root: str, main_file: str) -> None:
    """Refuse a handler whose top-level module ``top`` is not the job's own code, without importing it.

    ``find_spec`` of a top-level name runs nothing of the module; a name already imported (``os``)
    answers from ``sys.modules``. Built-in and frozen modules have no location: refused.
    """
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return  # not found: the import says so
    locations = [spec.origin] if spec.has_location and spec.origin else []
    locations += list(spec.submodule_search_locations or [])
    roots = allowed_roots(root, main_file)
    where = locations[0] if locations else (spec.origin or "built in")
    if not locations or not all(_inside(os.path.realpath(loc), roots) for loc in locations):
        raise Refused(
            f"handler {handler!r}: module {top!r} ({where}) is not inside the source root {root} or the job's "
            "environment; a handler must be the job's own code"
        )


def _inside(path: str, roots: list[str]) -> bool:
    return any(path == r or path.startswith(r.rstrip(os.sep) + os.sep) for r in roots)


def import_module(name: str, root: str):
    """Import ``name``; a missing handler module is refused, a missing dependency of it fails."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        parts = name.split(".")
        if exc.name in {".".join(parts[:i]) for i in range(1, len(parts) + 1)}:
            raise Refused(
                f"handler module {name!r} is not found under the source root {root}; check the handler and the source"
            ) from None
        raise


def load_main(path: str):
    """Load the main file as a module (its ``if __name__ == "__main__"`` block does not run)."""
    if not os.path.isfile(path):
        raise Refused(f"main file {path} does not exist")
    stem = os.path.splitext(os.path.basename(path))[0]
    # Its own name, so pickling and dataclasses work, unless that would shadow a loaded module.
    name = stem if stem.isidentifier() and stem not in sys.modules else "__python_exec_main__"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise Refused(f"main file {path} is not a Python source file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_data(path: str):
    """The run's data items (``DataItem`` inputs, ``run``, outputs), or ``None`` without a data file."""
    if not path:
        return None
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("python_exec_data", os.path.join(here, DATA_MODULE_NAME))
    if spec is None or spec.loader is None:
        raise Refused(f"{DATA_MODULE_NAME} is missing beside the bootstrap")
    module = importlib.util.module_from_spec(spec)
    sys.modules["python_exec_data"] = module  # DataItem's module, so its objects pickle
    spec.loader.exec_module(module)
    try:
        return module.Data(path)
    except (OSError, ValueError, KeyError) as exc:
        raise Refused(f"the data file {path} cannot be read ({exc})") from None


def bind(function, handler: str, params: dict, context: dict, data=None) -> tuple[tuple, dict]:
    """Bind the parameters, the inputs (``DataItem``) and ``context``, ``run`` and ``project`` (if asked
    for) to the handler's signature."""
    inputs = data.inputs if data is not None else {}
    for name in sorted(set(inputs) & set(params)):
        raise Refused(f"{name!r} is both an input and a parameter; rename one")
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # a builtin without a signature: let the call decide
        return (), {**params, **inputs}
    kwargs = {**params, **inputs}
    reserved = {
        "context": context,
        "run": data.run if data is not None else None,
        "project": data.project if data is not None else None,
    }
    for name, value in reserved.items():
        wanted = signature.parameters.get(name)
        if value is None or wanted is None or wanted.kind not in (wanted.POSITIONAL_OR_KEYWORD, wanted.KEYWORD_ONLY):
            continue
        if name in kwargs:
            raise Refused(
                f"handler {handler}{signature} receives the run's {name} as {name!r}; "
                f"rename the parameter called {name!r}"
            )
        kwargs[name] = value
    named = {n for n, p in signature.parameters.items() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
    takes_any = any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values())
    unknown = sorted(set(kwargs) - named)
    if unknown and not takes_any:  # named first: bind() would complain of a missing one instead
        raise Refused(
            f"handler {handler}{signature} has no parameter {', '.join(map(repr, unknown))}; "
            "fix the parameters or the signature"
        )
    try:
        bound = signature.bind(**kwargs)
    except TypeError as exc:
        names = ", ".join(sorted(params)) or "none"
        raise Refused(
            f"handler {handler}{signature} cannot take the parameters given ({names}): {exc}; "
            "fix the parameters or the signature"
        ) from None
    return bound.args, bound.kwargs


def call(function, args: tuple, kwargs: dict):
    """Call the handler; run it to completion when it is a coroutine function."""
    value = function(*args, **kwargs)
    if inspect.isawaitable(value):
        import asyncio

        async def wait():
            return await value

        value = asyncio.run(wait())
    return value


def raised(exc: BaseException, error_file: str) -> int:
    """Print the traceback from the job's own frames on, describe the exception, return 1."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == __file__:
        tb = tb.tb_next  # the bootstrap's frames say nothing about the job
    traceback.print_exception(type(exc), exc, tb, file=sys.stderr)
    write_error(error_file, _type_name(type(exc)), str(exc), "exception")
    return EXIT_FAILED


def fail(code: int, type_name: str, message: str, kind: str, error_file: str) -> int:
    """Print one ``[python_exec] error:`` line, describe it in the error file, return ``code``."""
    print(f"{PREFIX} error: {message}", file=sys.stderr)
    write_error(error_file, type_name, message, kind)
    return code


def write_error(path: str, type_name: str, message: str, kind: str) -> None:
    if path:
        if len(message) > MAX_ERROR_CHARS:  # the worker reads at most max_result_bytes of this file
            message = message[:MAX_ERROR_CHARS] + "…"
        write_atomically(path, json.dumps({"type": type_name, "message": message, "kind": kind}))


def write_atomically(path: str, text: str) -> None:
    """Write ``text`` so that a reader sees all of it or nothing."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def _depth(text: str) -> int:
    """How deeply ``text`` (JSON) nests, as airflow_python_exec.isolation.json_limits.depth counts it."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return 0  # too few brackets to be too deep: the common case costs two counts
    import re
    from itertools import accumulate

    brackets = re.sub(r"[^\[\]{}]+", "", re.sub(r'"[^"\\]*(?:\\.[^"\\]*)*"', "", text, flags=re.DOTALL))
    return max(accumulate(1 if c in "[{" else -1 for c in brackets), default=0)


def _dotted(name: str) -> bool:
    return bool(name) and all(part.isidentifier() for part in name.split("."))


def _type_name(cls: type) -> str:
    module = getattr(cls, "__module__", "")
    return cls.__qualname__ if module in ("builtins", "__main__", "") else f"{module}.{cls.__qualname__}"


def _not_json(value):
    raise TypeError(f"a value of type {_type_name(type(value))} is not JSON")


if __name__ == "__main__":
    sys.exit(main())
