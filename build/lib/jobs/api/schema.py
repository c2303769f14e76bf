"""The jobs API's own OpenAPI hook (the shared ones are apikit.schema)."""

from __future__ import annotations


def name_the_job_types(result: dict, generator, request, public) -> dict:
    """drf-spectacular postprocessing hook: parameters that take job type names list the
    registered ones (known only once the apps have registered them, not at import)."""
    from jobs.core import registry

    names = sorted(registry.all_types())
    for parameter in result.get("paths", {}).get("/api/queues/", {}).get("get", {}).get("parameters", []):
        if parameter["name"] == "type":
            parameter["schema"]["items"]["enum"] = names
    return result
