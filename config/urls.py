from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apikit.errors import not_found_view

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("", include("jobs.urls")),  # the API, /metrics, django-rq's guarded pages (before admin/)
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("ingestion.api")),
    re_path(r"^api/", not_found_view),  # unknown API paths answer JSON, DEBUG or not
]

handler400 = "apikit.errors.bad_request_view"
handler404 = "apikit.errors.not_found_view"
