"""The ASGI application (served by uvicorn: devtools/web.py): HTTP (the API, the admin
and its assets, behind the request-body limit) and the WebSocket routes of each app,
behind token-or-session authentication."""

import gc
import os

from config.env import ConfigError

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

try:
    import django
    from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler

    django.setup(set_prefix=False)  # as get_asgi_application does
    from apikit.asgi import Handler
    from apikit.redact import redact_server_logs

    redact_server_logs()  # a WebSocket's ?token= is not written to the log

    # The web server serves the admin's own assets too: no CDN, no extra web server needed.
    # Django's handler, in one trip to a thread per request (apikit.asgi).
    django_asgi_app = ASGIStaticFilesHandler(Handler())
except ConfigError as error:  # one line, not a traceback
    raise SystemExit(f"jobdesk: configuration error: {error}") from None

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

import ingestion.routing  # noqa: E402
import jobs.live.routing  # noqa: E402
from apikit.bodylimit import BodyLimit  # noqa: E402
from jobs.live.wsauth import TokenOrSessionAuth  # noqa: E402

websocket_routes = jobs.live.routing.websocket_urlpatterns + ingestion.routing.websocket_urlpatterns
application = ProtocolTypeRouter(
    {
        "http": BodyLimit(django_asgi_app),  # oversized bodies refused before they are read
        "websocket": TokenOrSessionAuth(URLRouter(websocket_routes + jobs.live.routing.websocket_fallback)),
    }
)

# Everything loaded so far lives as long as the process: out of the garbage collector's
# way. Its full collections stop every WebSocket of the process at once, for longer the
# more objects it walks (bench/ws.py: 65–257 ms pauses over ~200k objects, half of them
# these, and most of the live tail).
gc.freeze()
