"""Django's WSGI handler, serving ``apikit.views.pooled`` views as the plain views they
wrap.

A pooled view is a coroutine function (for hosts on Django's own ASGI handler), so under
WSGI Django ran each API request through ``async_to_sync``: a new event loop, in a new
thread, per request, only to hop back to the calling thread for the view — about 3.5 ms
of a submit's 5–9 ms (the test client, PostgreSQL). Under WSGI the request is in a thread
of its own already: the plain view runs there.

``application = apikit.wsgi.Handler()`` in place of ``get_wsgi_application()`` (after
``django.setup()``).
"""

from __future__ import annotations

from django.core.handlers.wsgi import WSGIHandler

from apikit.views import plain


class Handler(WSGIHandler):
    def resolve_request(self, request):
        return plain(super().resolve_request(request))
