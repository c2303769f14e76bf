"""``manage.py rqscheduler``: django-rq's command, with Jobdesk's default queue.

django-rq's own defaults to a queue named "default", which Jobdesk does not have (its
queues are named by priority), so the plain command — the one any Django-RQ user types
— crashed. Every Jobdesk dispatch names its queue, so the scheduler's own queue only
needs to exist. ``jobs`` is listed before ``django_rq`` in INSTALLED_APPS so this
command wins.
"""

from django_rq.management.commands.rqscheduler import Command as DjangoRQSchedulerCommand


class Command(DjangoRQSchedulerCommand):
    def add_arguments(self, parser) -> None:
        super().add_arguments(parser)
        parser.set_defaults(queue="normal")
