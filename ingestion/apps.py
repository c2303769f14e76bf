from django.apps import AppConfig


class IngestionConfig(AppConfig):
    name = "ingestion"
    verbose_name = "Ingestion"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the job type, its completion hooks and the cleanup cron with `jobs`.
        from ingestion import processing  # noqa: F401
