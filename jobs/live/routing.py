"""WebSocket routes of the jobs platform (a project's ASGI application mounts them:
config/asgi.py here; README "Add Jobdesk to your project" elsewhere)."""

from django.urls import path, re_path

from jobs.live import consumers

websocket_urlpatterns = [
    path("ws/jobs/<str:job_id>/", consumers.JobConsumer.as_asgi()),
    path("ws/batches/<str:batch_id>/", consumers.BatchConsumer.as_asgi()),
    path("ws/ops/", consumers.OpsConsumer.as_asgi()),
]

# Last, after every app's routes: an unknown path is closed with 4404.
websocket_fallback = [re_path(r"", consumers.NoRoute.as_asgi())]
