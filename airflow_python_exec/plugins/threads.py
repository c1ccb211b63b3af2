"""The page's work off the api-server's event loop, on a few threads of its own.

The api-server that serves the "Python jobs" page also serves Airflow's UI, REST API and the task
execution API (workers' heartbeats, state changes). Building the catalog (database queries, ``stat``
of job folders, rendering) runs on :data:`PAGE_THREADS` threads of the page's own, never on the
event loop, and never on Starlette's shared threadpool (whose 40 tokens the API's own synchronous
routes use): at most that many page requests work at once, the others wait without holding any
thread, and the event loop stays free for the execution API.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
#: Page requests worked on at once (one per core of a small api-server; the work holds the GIL
#: most of the time, so more threads would only slow the event loop down).
PAGE_THREADS = 2
_POOL = ThreadPoolExecutor(max_workers=PAGE_THREADS, thread_name_prefix="python-exec-page")


async def off_loop(func: Callable[..., T], *args: Any) -> T:
    """Run ``func(*args)`` on the page's threads and wait for it without blocking the event loop.

    :returns: what ``func`` returns; :raises: what it raises (an ``HTTPException`` too).
    """
    context = contextvars.copy_context()  # as Starlette's run_in_threadpool: the request's context vars
    return await asyncio.get_running_loop().run_in_executor(_POOL, functools.partial(context.run, func, *args))


class Shared:
    """One call of ``build`` serves every request that arrives while it runs, or waits for it.

    A request gets the result of a call that *started after it arrived*, never an older one: with no
    call running it starts one; while one runs it joins the next call, started as soon as the running
    one ends. So four viewers at once cost two calls, not four, and nothing is kept once the requests
    that asked for it have their answer (no cache to expire). The waiting is done on the event loop
    (no thread held); the call runs on the page's threads (:func:`off_loop`).

    :param build: a function without arguments.
    """

    def __init__(self, build: Callable[[], Any]) -> None:
        self._build = build
        #: Per event loop (a test client may run several): ``[running, next]`` futures.
        self._calls: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[Any]] = weakref.WeakKeyDictionary()

    async def get(self) -> Any:
        """The result of a call of ``build`` that started after this request; raises what it raised."""
        calls = self._calls.setdefault(asyncio.get_running_loop(), [None, None])
        if calls[1] is None:  # else: a call waits to start, so its result is fresh for us: join it
            if calls[0] is None:
                running = calls[0] = asyncio.ensure_future(self._call(calls, None))
                return await asyncio.shield(running)  # one request going away cancels no one's call
            calls[1] = asyncio.ensure_future(self._call(calls, calls[0]))
        following: asyncio.Future[Any] = calls[1]
        return await asyncio.shield(following)

    async def _call(self, calls: list[Any], after: Any) -> Any:
        if after is not None:
            await asyncio.wait([after])  # whatever its outcome
            calls[0], calls[1] = calls[1], None
        try:
            return await off_loop(self._build)
        finally:
            if calls[0] is asyncio.current_task():
                calls[0] = None
