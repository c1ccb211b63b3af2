"""A daily batch job: reports which run it belongs to, from Airflow's context variables."""

import os

print(f"Daily report for {os.getenv('REPORT_DATE', 'unknown date')}")
print(f"DAG {os.getenv('AIRFLOW_CTX_DAG_ID')} run {os.getenv('AIRFLOW_CTX_DAG_RUN_ID')}")
print(f"Task {os.getenv('AIRFLOW_CTX_TASK_ID')}, try {os.getenv('AIRFLOW_CTX_TRY_NUMBER')}")
