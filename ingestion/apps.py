from django.apps import AppConfig


class IngestionConfig(AppConfig):
    name = "ingestion"
    verbose_name = "Ingestion"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Registers the job type, its completion hooks and the cleanup cron with `jobs`.
        from django.db.models.signals import post_delete

        from ingestion import conf, processing, sets  # noqa: F401 - sets registers its job type

        conf.apply_defaults()
        from ingestion.models import Material

        post_delete.connect(processing.forget_file, sender=Material, dispatch_uid="ingestion-forget-file")
