"""Airflow task decorators of airflow-python-exec."""
