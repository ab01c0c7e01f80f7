from argparse import ArgumentParser
from typing import Any

from agencies.models import Agency
from agencies.services import apikey_create
from visio_broker.audit import CLI
from visio_broker.commands import OperatorCommand
from visio_broker.errors import NotFound


class Command(OperatorCommand):
    help = "Create an API key for an agency's own system; prints the key (shown once) last."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("--agency", required=True, help="agency slug")
        parser.add_argument("--name", required=True, help="the integration, e.g. hr-directory")
        parser.add_argument(
            "--scopes", required=True, help="comma-separated, e.g. meetings:read,meetings:write"
        )
        parser.add_argument("--expires-days", type=int, default=None, dest="expires_days")

    def handle(self, *args: Any, **options: Any) -> None:
        agency = Agency.objects.filter(slug=options["agency"]).first()
        if agency is None:
            raise NotFound(f"no agency with slug {options['agency']!r}", code="unknown_agency")
        scopes = [s.strip() for s in options["scopes"].split(",") if s.strip()]
        key, secret = apikey_create(
            actor=CLI,
            agency=agency,
            name=options["name"],
            scopes=scopes,
            expires_days=options["expires_days"],
        )
        expiry = f", expires {key.expires_at:%Y-%m-%d %H:%M} UTC" if key.expires_at else ""
        self.stdout.write(
            f"Created API key vbk_{key.prefix} for {agency.slug} ({', '.join(key.scopes)}{expiry})."
        )
        self.stdout.write("Store it now; it is not shown again:")
        self.stdout.write(secret)
