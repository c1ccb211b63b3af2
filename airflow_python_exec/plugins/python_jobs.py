"""The ``AirflowPlugin`` "Python jobs", registered by the package's ``airflow.plugins`` entry point.

Airflow 3.1+ plugin interface: a FastAPI app (``fastapi_apps``) mounted by the api-server under
``/python-exec``, and an ``external_views`` entry that puts "Python jobs" in the UI's navigation
(the page is shown inside the Airflow UI, at ``/plugin/python-jobs``).
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from airflow_python_exec.plugins.app import URL_PREFIX, create_app

NAME = "Python jobs"


class PythonJobsPlugin(AirflowPlugin):
    """The "Python jobs" page: jobs, Encrypt and Upload (see :mod:`airflow_python_exec.plugins.app`)."""

    name = "python_exec"
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": NAME}]
    external_views = [{
        "name": NAME,
        "href": f"{URL_PREFIX}/",
        "destination": "nav",
        "url_route": "python-jobs",
        "nav_top_level": True,
    }]
