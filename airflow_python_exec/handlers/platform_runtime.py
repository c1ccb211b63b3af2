"""``digitalhub_runtime_python``: the data platform's ``handler`` decorator, so the platform's files run
unchanged (DESIGN.md, "Functions: handler jobs").

Standard library only, like the bootstrap: the service copies this file into the run's private
folder as ``platform/digitalhub_runtime_python.py`` and the bootstrap appends that folder to
``sys.path`` (last: a job that installs the platform's own SDK gets it). Nothing is installed.

``@handler(outputs=["dataset", "score"])`` records the names on the function (as ``function.outputs``
would declare them; the worker reads the same literal list from the file before the start, so the
outputs are assets) and returns the function itself: it stays callable, its return value unchanged.
"""

from __future__ import annotations

#: The attribute the bootstrap reads the declared outputs from.
OUTPUTS_ATTRIBUTE = "__python_exec_outputs__"


def handler(outputs=None):
    """Declare a handler's outputs, as the platform's decorator: ``@handler(outputs=["a", "b"])``.

    :param outputs: output names (or ``function.outputs`` specs), matched to the returned values by
        position; ``None``: none declared. ``@handler`` without parentheses works too.
    :returns: a decorator returning the function unchanged (with the names recorded on it).
    :raises TypeError: ``outputs`` is not a list or tuple of names.
    """
    if callable(outputs):  # @handler without parentheses
        return handler()(outputs)
    if outputs is not None and (isinstance(outputs, (str, bytes)) or not isinstance(outputs, (list, tuple))):
        raise TypeError(f'handler(outputs=...) takes a list of names, like ["dataset"], not {type(outputs).__name__}')

    def decorate(function):
        setattr(function, OUTPUTS_ATTRIBUTE, list(outputs or []))
        return function

    return decorate


__all__ = ["handler"]
