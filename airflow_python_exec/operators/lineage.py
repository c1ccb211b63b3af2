"""OpenLineage for :class:`~airflow_python_exec.operators.python_job.PythonJobOperator` (the optional
``[openlineage]`` extra: ``apache-airflow-providers-openlineage``).

The inputs read and the outputs published by the last run, each a dataset whose namespace and name
come from its URI (OpenLineage's naming: ``file`` / ``/path``, ``s3://bucket`` / ``key``), with a
``schema`` facet for a table and ``outputStatistics`` (``rowCount``, ``size``) for each output.
"""

from __future__ import annotations

from typing import Any

from airflow_python_exec.run_result import RunResult

#: Table Schema types -> the type names written in the OpenLineage schema facet.
_TYPES = {"string": "string", "integer": "integer", "number": "double", "boolean": "boolean"}


def namespace_and_name(uri: str) -> tuple[str, str]:
    """OpenLineage's dataset naming of a URI: ``file:///a/b`` -> ``("file", "/a/b")``,
    ``s3://bucket/k`` -> ``("s3://bucket", "k")``."""
    scheme, _, rest = uri.partition("://")
    if scheme == "file":
        return "file", "/" + rest.lstrip("/")
    authority, _, path = rest.partition("/")
    return f"{scheme}://{authority}", path or "/"


def operator_lineage(result: RunResult | None) -> Any:
    """An ``OperatorLineage`` of the run (empty when nothing ran or the provider is missing)."""
    from airflow.providers.common.compat.openlineage.facet import (
        Dataset,
        OutputDataset,
        OutputStatisticsOutputDatasetFacet,
        SchemaDatasetFacet,
        SchemaDatasetFacetFields,
    )
    from airflow.providers.openlineage.extractors import OperatorLineage

    if result is None or result.outputs is None:
        return OperatorLineage()

    def schema_facet(schema: Any) -> dict[str, Any]:
        if not isinstance(schema, dict):
            return {}
        fields = [
            SchemaDatasetFacetFields(name=str(f.get("name")), type=_TYPES.get(str(f.get("type")), str(f.get("type"))))
            for f in schema.get("fields", [])
            if isinstance(f, dict)
        ]
        return {"schema": SchemaDatasetFacet(fields=fields)}

    inputs = [Dataset(*namespace_and_name(uri)) for uri in (result.inputs or {}).values()]
    outputs = []
    for item in result.outputs.items:
        namespace, name = namespace_and_name(item.asset_uri or item.uri)  # the asset: stable across versions
        outputs.append(
            OutputDataset(
                namespace=namespace,
                name=name,
                facets=schema_facet(item.schema),
                outputFacets={
                    "outputStatistics": OutputStatisticsOutputDatasetFacet(rowCount=item.rows, size=item.size)
                },
            )
        )
    return OperatorLineage(inputs=inputs, outputs=outputs)
