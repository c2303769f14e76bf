import os

from config.env import ConfigError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

try:
    import django

    django.setup(set_prefix=False)  # as get_wsgi_application() does; apikit's views need the apps

    from apikit.wsgi import Handler

    # The API's views as plain views: Django's own handler ran each through an event loop.
    application = Handler()
except ConfigError as error:
    raise SystemExit(f"jobdesk: configuration error: {error}") from None
