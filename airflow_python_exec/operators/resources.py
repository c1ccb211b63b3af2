"""The operator's side of resource limits (DESIGN.md, "Resource limits"): ``resources=`` checked
when the DAG is parsed, turned into the task pod's requests and limits under Kubernetes, and the
run's facts pushed to XCom.

Under the KubernetesExecutor a task runs in a pod of its own: ``resources`` become that pod's
``base`` container requests and limits through ``executor_config={"pod_override": V1Pod(...)}``,
built with the ``kubernetes`` client's models as the cncf-kubernetes provider documents. Only when
the ``kubernetes`` package is importable (the ``[kubernetes]`` extra); an ``executor_config`` given
by the DAG keeps its own ``pod_override``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported when a task has resources: a DAG file's parse loads no job model
    from airflow_python_exec.models.resources import Resources

#: The container Airflow's KubernetesExecutor runs the task in.
BASE_CONTAINER = "base"


def pod_override(resources: Resources) -> Any | None:
    """A ``V1Pod`` whose ``base`` container requests and is limited to ``resources`` (memory, cpu,
    ``tmp`` as ephemeral storage), or ``None`` without the ``kubernetes`` package or without limits.

    Requests equal limits (the pod's QoS class is then Guaranteed when both are set): the worker's
    scheduler must count what the job may use.
    """
    try:
        from kubernetes.client import models as k8s
    except ImportError:
        return None
    amounts: dict[str, str] = {}
    if resources.memory is not None:
        amounts["memory"] = f"{math.ceil(resources.memory / 2**20)}Mi"
    if resources.cpu is not None:
        amounts["cpu"] = f"{math.ceil(resources.cpu * 1000)}m"
    if resources.tmp is not None:
        amounts["ephemeral-storage"] = f"{math.ceil(resources.tmp / 2**20)}Mi"
    if not amounts:
        return None
    container = k8s.V1Container(
        name=BASE_CONTAINER, resources=k8s.V1ResourceRequirements(requests=dict(amounts), limits=dict(amounts))
    )
    return k8s.V1Pod(spec=k8s.V1PodSpec(containers=[container]))


def with_pod_resources(resources: Mapping[str, Any] | None, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The operator's ``kwargs`` with ``executor_config``'s ``pod_override`` made from ``resources``
    (unless the DAG gave its own) and ``BaseOperator``'s ``resources`` in Airflow's form;
    ``resources`` is parsed here, so a typo fails the DAG's parse.

    :raises JobConfigError: ``resources`` does not parse.
    """
    if not resources:
        return kwargs
    from airflow_python_exec.models.resources import parse_resources

    parsed = parse_resources(resources)
    kwargs = {**kwargs, "resources": airflow_resources(parsed)}
    config = dict(kwargs.get("executor_config") or {})
    if "pod_override" not in config:
        pod = pod_override(parsed)
        if pod is not None:
            config["pod_override"] = pod
            return {**kwargs, "executor_config": config}
    return kwargs


def airflow_resources(resources: Resources) -> dict[str, Any] | None:
    """The same limits in the form of ``BaseOperator``'s own ``resources`` (Airflow's ``Resources``:
    ``cpus``, ``ram`` and ``disk`` in MiB), which the operator's argument of that name replaces."""
    values = {
        "cpus": resources.cpu,
        "ram": math.ceil(resources.memory / 2**20) if resources.memory else None,
        "disk": math.ceil(resources.tmp / 2**20) if resources.tmp else None,
    }
    return {k: v for k, v in values.items() if v is not None} or None


def push_run_facts(context: Any, facts: Mapping[str, Any] | None) -> None:
    """Push what the run ran with (``python``, ``environment``, ``sandbox``, ``resources``) as the
    XCom ``python_exec_run`` beside ``return_value``."""
    ti = context.get("ti") if isinstance(context, Mapping) else None
    if ti is not None and facts is not None:
        ti.xcom_push(key="python_exec_run", value=dict(facts))
