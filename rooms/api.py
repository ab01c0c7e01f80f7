"""REST API: join tickets (to be built)."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
