"""Every job folder under ``[python_exec] upload_folder`` as a DAG ``job_<jobId>``: upload a job on the
"Python jobs" page, then trigger it (its plain macros are the Trigger form's Params) or give it a
``"dag": {"schedule": "@hourly"}`` in ``job.json``. See docs/jobs-as-dags.md.

``make airflow`` sets ``upload_folder`` to ``example_dags/uploads/``; with it unset, this file makes no DAG.
"""

from airflow_python_exec.job_dags import load_job_dags

load_job_dags(globals())
