"""The ``AirflowPlugin`` "Python jobs", registered by the package's ``airflow.plugins`` entry point.

Airflow 3.1+ plugin interface: a FastAPI app (``fastapi_apps``) mounted by the api-server under
``/python-exec``, and an ``external_views`` entry that puts "Python jobs" at the top level of the UI's
navigation (the page is shown inside the Airflow UI, at ``/plugin/python-jobs``).

Every Airflow process loads the plugins, task processes too (for plugin macros); this module stays
cheap there: the FastAPI app and the api-server's auth dependencies are built on the first request.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

from airflow_python_exec.plugins import URL_PREFIX

NAME = "Python jobs"


class LazyApp:
    """An ASGI app that builds :func:`airflow_python_exec.plugins.app.create_app` on its first call."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_python_exec.plugins.app import create_app

            self._app = create_app()
        await self._app(scope, receive, send)


class PythonJobsPlugin(AirflowPlugin):
    """The "Python jobs" page: jobs, Encrypt and Upload (see :mod:`airflow_python_exec.plugins.app`)."""

    name = "python_exec"
    fastapi_apps = [{"app": LazyApp(), "url_prefix": URL_PREFIX, "name": NAME}]  # noqa: RUF012 - AirflowPlugin's API
    external_views = [  # noqa: RUF012 - AirflowPlugin's API: class attributes its plugin manager reads
        {
            "name": NAME,
            "href": f"{URL_PREFIX}/",
            "destination": "nav",
            "url_route": "python-jobs",
            "nav_top_level": True,
        }
    ]
