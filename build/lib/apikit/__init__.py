"""The project's HTTP conventions, shared by every app's API (jobs, ingestion, a host
project's own): one error shape and the exception handler that produces it, token
authentication with throttled failures, rate limits that fail open, strict pagination,
filters and fields, and the OpenAPI hooks that document the errors. No models, no app:
it imports nothing of ``jobs`` or ``ingestion``, so both can use it."""
