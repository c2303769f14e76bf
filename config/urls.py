from django.contrib import admin
from django.urls import include, path, re_path
from django.views.generic import RedirectView
from django_rq.urls import get_admin_urlpatterns, get_api_urlpatterns
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from apikit.errors import not_found_view
from jobs.api.metrics import metrics_view
from jobs.console.roles import guard_raw_queues

# django-rq's raw queue pages, changes to Redis only for operators who may act.
django_rq_urls = get_api_urlpatterns() + get_admin_urlpatterns(view_wrapper=guard_raw_queues)

urlpatterns = [
    path("", RedirectView.as_view(url="/admin/", permanent=False)),
    path("admin/django_rq/", include((django_rq_urls, "django_rq"))),
    path("admin/", admin.site.urls),
    path("metrics", metrics_view, name="metrics"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/", include("jobs.api.urls")),
    path("api/", include("ingestion.api")),
    re_path(r"^api/", not_found_view),  # unknown API paths answer JSON, DEBUG or not
]

handler404 = "apikit.errors.not_found_view"
