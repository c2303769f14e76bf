"""Django loads an app's models from here; they live in ``jobs.core.models``."""

from jobs.core.models import FlowChange, FlowControl, Job, JobEvent, JobLog, JobStatsHour, PayloadText, Schedule

__all__ = ["FlowChange", "FlowControl", "Job", "JobEvent", "JobLog", "JobStatsHour", "PayloadText", "Schedule"]
