"""The Airflow UI plugin "Python jobs" (DESIGN.md, "The UI plugin"): :mod:`.python_jobs` registers it,
:mod:`.app` serves it, :mod:`.catalog` lists jobs, :mod:`.upload` checks and writes job bundles."""

#: Where the api-server mounts the plugin's app.
URL_PREFIX = "/python-exec"
