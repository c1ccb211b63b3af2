"""Provider metadata for Airflow's ``apache_airflow_provider`` entry point.

Declares the ``[python_exec]`` configuration section (so ``airflow config list --defaults`` shows it),
the ``@task.python_job`` and ``@task.python_exec`` decorators, the operators and the hook. Defaults come from
:data:`airflow_python_exec.settings.OPTIONS`, the one place they are written.
"""

from __future__ import annotations

from airflow_python_exec import __version__
from airflow_python_exec.settings import OPTIONS, SECTION

_TYPES = {
    "enabled": "boolean",
    "inherit_env": "boolean",
    "sandbox_network": "boolean",
    "lock_timeout": "float",
    "max_result_bytes": "integer",
    "max_source_bytes": "integer",
    "max_output_bytes": "integer",
}
_EXAMPLES = {
    "install_path": "/usr/local",
    "cache_dir": "/var/cache/airflow_python_exec",
    "fernet_key": "<output of airflow-python-exec generate-key>",
    "upload_folder": "/opt/airflow/dags/jobs",
    "sandbox": "bubblewrap",
    "sandbox_writable_paths": "/data/out,/srv/exports",
    "data_store": "s3://aws_default@bucket/data",
}


def get_provider_info() -> dict:
    """Return the provider description Airflow's ``ProvidersManager`` reads."""
    return {
        "package-name": "airflow-python-exec",
        "name": "Python Exec",
        "description": "Run uploaded Python script jobs (app.py, .env, job.json, pylock.toml) and handler "
        "functions as Airflow tasks.",
        "versions": [__version__],
        "integrations": [{"integration-name": "Python Exec", "tags": ["software"]}],
        "operators": [
            {
                "integration-name": "Python Exec",
                "python-modules": [
                    "airflow_python_exec.operators.python_job",
                    "airflow_python_exec.operators.provision",
                ],
            }
        ],
        "hooks": [{"integration-name": "Python Exec", "python-modules": ["airflow_python_exec.hooks.python_exec"]}],
        "task-decorators": [
            {"name": "python_job", "class-name": "airflow_python_exec.decorators.python_job.python_job_task"},
            {"name": "python_exec", "class-name": "airflow_python_exec.decorators.python_exec.python_exec_task"},
        ],
        "config": {
            SECTION: {
                "description": "airflow-python-exec: how Python script jobs are validated, built and run.",
                "options": {
                    option: {
                        "description": description,
                        "version_added": None,
                        "type": _TYPES.get(option, "string"),
                        "example": _EXAMPLES.get(option),
                        "default": default,
                        **({"sensitive": True} if option == "fernet_key" else {}),
                    }
                    for option, (default, description) in OPTIONS.items()
                },
            }
        },
    }
