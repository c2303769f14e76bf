"""WebSocket routes of the ingestion app (mounted by config.asgi)."""

from django.urls import path

from ingestion import consumers

websocket_urlpatterns = [
    path("ws/materials/<str:material_id>/", consumers.MaterialConsumer.as_asgi()),
]
