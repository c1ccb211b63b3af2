"""``dag`` of ``job.json``: how a job folder becomes a DAG (DESIGN.md, "Jobs as DAGs").

Only :func:`airflow_python_exec.job_dags.load_job_dags` uses it; it is part of the job model so that
every place that loads a job (a run, an upload, the CLI) refuses a typo in it the same way, in one
line. No Airflow import here: the core stays usable without Airflow (a schedule is checked with
``croniter``, the library Airflow's own cron timetables use, imported only when a schedule is given).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

#: Airflow's schedule presets (``airflow.sdk.definitions.timetables._cron.CRON_PRESETS``, plus the two
#: that are not cron expressions).
PRESETS = ("@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly")


class JobDagSpec(BaseModel):
    """The ``dag`` object of ``job.json``: the DAG that ``load_job_dags`` makes for the job.

    :ivar schedule: a cron expression (``"*/5 * * * *"``, in UTC) or a preset (``"@hourly"``);
        ``None`` (the default): the DAG runs only when triggered.
    :ivar description: the DAG's description (shown in the UI); default: the job's script or handler.
    :ivar tags: tags added to ``python-job``.
    :ivar retries: the task's retries (a run that failed, not a job refused before it starts).
    :ivar max_active_runs: at most this many runs of the DAG at once.

    Unknown keys are errors (``dag.schedul: unknown key 'schedul'; ...``), as elsewhere in
    ``job.json``; ``catchup`` is not a key: it is always off.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    schedule: StrictStr | None = None
    description: StrictStr | None = None
    tags: list[StrictStr] = Field(default_factory=list)
    retries: StrictInt | None = Field(default=None, ge=0)
    max_active_runs: StrictInt | None = Field(default=None, ge=1)

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, schedule: str | None) -> str | None:
        if schedule is None:
            return None
        schedule = " ".join(schedule.split())
        if schedule.startswith("@"):
            if schedule not in PRESETS:
                raise ValueError(f"schedule {schedule!r} is not a preset; use one of {', '.join(PRESETS)}")
            return schedule
        from croniter import croniter

        if not croniter.is_valid(schedule):
            raise ValueError(
                f"schedule {schedule!r} is not a cron expression; write it like '0 6 * * *' (minute hour "
                "day month weekday, UTC) or a preset such as '@daily'"
            )
        return schedule

    @field_validator("tags")
    @classmethod
    def _tags(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not tag.strip() or len(tag) > 100:
                raise ValueError(f"tag {tag!r} must be 1 to 100 characters; fix or remove it")
        return tags
