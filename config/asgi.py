"""ASGI entry point for daphne: HTTP now, WebSocket routes join in config.routing later."""

import os

from config.env import ConfigError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

try:
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler
    from django.core.asgi import get_asgi_application

    # daphne serves the admin's own assets too: no CDN, no extra web server needed.
    django_asgi_app = ASGIStaticFilesHandler(get_asgi_application())
except ConfigError as error:  # one line, not a traceback (SPEC §2)
    raise SystemExit(f"jobdesk: configuration error: {error}") from None

from channels.routing import ProtocolTypeRouter  # noqa: E402

application = ProtocolTypeRouter({"http": django_asgi_app})
