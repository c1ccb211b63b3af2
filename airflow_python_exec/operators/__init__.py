"""Airflow operators of airflow-python-exec."""
