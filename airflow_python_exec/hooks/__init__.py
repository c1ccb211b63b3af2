"""Airflow hooks of airflow-python-exec."""
