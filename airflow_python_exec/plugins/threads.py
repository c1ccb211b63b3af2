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
