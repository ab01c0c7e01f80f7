from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from visio_broker import views

urlpatterns = [
    path("healthz", views.healthz, name="healthz"),
    path("readyz", views.readyz, name="readyz"),
    path("accounts/", include("allauth.urls")),
    path("admin/", admin.site.urls),
    path("api/v1/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("api/v1/", include("visio_broker.api_urls")),
    # Rooms before meetings (their paths do not overlap): the join page is the busiest path,
    # everyone at the top of the hour, and the resolver tries the patterns in order.
    path("", include("rooms.urls")),
    path("", include("meetings.urls")),
    path("", include("agencies.urls")),
]
