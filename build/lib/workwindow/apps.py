from django.apps import AppConfig


class WorkwindowConfig(AppConfig):
    name = "workwindow"
    verbose_name = "Work windows"
