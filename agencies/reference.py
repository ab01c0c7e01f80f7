"""Reference data: ISO 3166 countries and IANA time zones, from the tzdata package."""

from __future__ import annotations

import zoneinfo
from functools import cache
from importlib.resources import files

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _


@cache
def countries() -> dict[str, str]:
    """ISO 3166-1 alpha-2 code → English name."""
    table = (files("tzdata.zoneinfo") / "iso3166.tab").read_text(encoding="utf-8")
    rows = (line.split("\t") for line in table.splitlines() if line and not line.startswith("#"))
    return {code: name for code, name in rows}


@cache
def timezones() -> tuple[str, ...]:
    return tuple(sorted(zoneinfo.available_timezones()))


def language_codes() -> tuple[str, ...]:
    return tuple(code for code, _name in settings.LANGUAGES)


def validate_country(value: str) -> None:
    if value not in countries():
        raise ValidationError(
            _("%(value)s is not an ISO 3166 country code (e.g. FR, DE, NL)."),
            code="invalid_country",
            params={"value": value},
        )


def validate_timezone(value: str) -> None:
    if value not in timezones():
        raise ValidationError(
            _("%(value)s is not an IANA time zone (e.g. Europe/Paris)."),
            code="invalid_timezone",
            params={"value": value},
        )


def validate_language(value: str) -> None:
    if value not in language_codes():
        raise ValidationError(
            _("%(value)s is not a supported language (%(choices)s)."),
            code="invalid_language",
            params={"value": value, "choices": ", ".join(language_codes())},
        )
