"""Django loads an app's models from here; they live in ``jobs.core.models``."""

from jobs.core.models import Job, JobEvent, JobStatsHour

__all__ = ["Job", "JobEvent", "JobStatsHour"]
