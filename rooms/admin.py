from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from rooms.models import MediaBackend, ReservedWindow, RoomReservation
from rooms.services import (
    validate_backend_capacity,
    validate_backend_secret,
    validate_backend_urls,
    validate_jitsi_sub,
)
from visio_broker.audit import audit_record
from visio_broker.errors import InvalidInput

# --- Media backends and reservations ----------------------------------------------------------

_URL_FIELDS = ("base_url", "frontend_url", "health_url")
_HEALTH_FIELDS = (
    "health_state",
    "consecutive_failures",
    "consecutive_successes",
    "last_checked_at",
    "last_error",
)


class MediaBackendForm(forms.ModelForm):
    """The same rules as ``backend_add``: URL schemes per kind, a secret readable now."""

    # The model's URLField knows only http(s); LiveKit servers are reached over ws(s)://.
    base_url = forms.CharField(label=_("base URL"), max_length=300)
    frontend_url = forms.CharField(label=_("front-end URL"), max_length=300, required=False)
    health_url = forms.CharField(label=_("health URL"), max_length=300, required=False)

    class Meta:
        model = MediaBackend
        fields = [
            "name",
            "kind",
            "enabled",
            *_URL_FIELDS,
            "api_key",
            "secret_env",
            "secret_file",
            "jitsi_sub",
            "country",
            "region",
            "agency",
            "capacity",
            "weight",
        ]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if self.errors:
            return data
        try:
            data["base_url"], data["frontend_url"], data["health_url"] = validate_backend_urls(
                kind=data["kind"],
                base_url=data["base_url"],
                frontend_url=data.get("frontend_url", ""),
                health_url=data.get("health_url", ""),
            )
            data["jitsi_sub"] = validate_jitsi_sub(
                kind=data["kind"], base_url=data["base_url"], jitsi_sub=data.get("jitsi_sub", "")
            )
            validate_backend_capacity(data["capacity"])
            validate_backend_secret(
                MediaBackend(
                    name=data.get("name", ""),
                    secret_env=data.get("secret_env", "").strip(),
                    secret_file=data.get("secret_file", "").strip(),
                )
            )
        except InvalidInput as exc:
            raise ValidationError(exc.message, code=exc.code) from None
        return data

    def _get_validation_exclusions(self) -> set[str]:
        # The URLs were checked in clean() with the schemes each kind allows.
        return {*super()._get_validation_exclusions(), *_URL_FIELDS}  # type: ignore[misc]


@admin.register(MediaBackend)
class MediaBackendAdmin(admin.ModelAdmin):
    form = MediaBackendForm
    list_display = [
        "name",
        "kind",
        "country",
        "owner",
        "capacity",
        "weight",
        "enabled",
        "health_state",
        "last_checked_at",
    ]
    list_filter = ["kind", "enabled", "health_state", "country", "agency"]
    search_fields = ["name", "base_url", "api_key"]
    autocomplete_fields = ["agency"]
    readonly_fields = [*_HEALTH_FIELDS, "created_at", "updated_at"]
    fieldsets = (
        (None, {"fields": ("name", "kind", "enabled")}),
        (_("Addresses"), {"fields": _URL_FIELDS}),
        (
            _("Credentials"),
            {
                "fields": ("api_key", "secret_env", "secret_file", "jitsi_sub"),
                "description": _(
                    "The secret itself is never stored: name the environment variable or the "
                    "file (absolute path) that holds it in every web and worker process."
                ),
            },
        ),
        (_("Placement"), {"fields": ("country", "region", "agency", "capacity", "weight")}),
        (_("Health"), {"fields": (*_HEALTH_FIELDS, "created_at", "updated_at")}),
    )

    @admin.display(description=_("owner"), ordering="agency__name")
    def owner(self, obj: MediaBackend) -> str:
        return str(obj.agency) if obj.agency_id else str(_("shared"))

    def get_queryset(self, request: HttpRequest) -> QuerySet[MediaBackend]:
        return super().get_queryset(request).select_related("agency")

    def save_model(self, request: HttpRequest, obj: MediaBackend, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            actor=request.user,  # type: ignore[arg-type]
            action="backend.changed" if change else "backend.created",
            obj=obj,
            agency=obj.agency,
            detail={"fields": sorted(form.changed_data), "via": "admin"},
        )


class ReservedWindowInline(admin.TabularInline):
    model = ReservedWindow
    extra = 0
    can_delete = False
    fields = readonly_fields = ("start", "end", "participants", "backend")

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(RoomReservation)
class RoomReservationAdmin(admin.ModelAdmin):
    """Read-only: reservations move only through the allocation services, which hold the
    backend locks that keep capacity from being over-committed."""

    list_display = [
        "room_name",
        "meeting",
        "title",
        "agency",
        "backend",
        "expected_participants",
        "released_at",
        "created_at",
    ]
    list_filter = ["backend", "agency"]
    search_fields = ["room_name", "meeting__title", "title"]
    list_select_related = ["meeting", "agency", "backend"]
    inlines = [ReservedWindowInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
