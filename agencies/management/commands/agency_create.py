from argparse import ArgumentParser
from typing import Any

from agencies.services import agency_create
from visio_broker.audit import CLI
from visio_broker.commands import OperatorCommand


class Command(OperatorCommand):
    help = "Create an agency."

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("slug", help="short identifier, e.g. fr-minint")
        parser.add_argument("--name", required=True)
        parser.add_argument("--country", required=True, help="ISO 3166 code, e.g. FR")
        parser.add_argument("--timezone", required=True, help="IANA zone, e.g. Europe/Paris")
        parser.add_argument("--language", default="en", help="default language (en, fr)")
        parser.add_argument(
            "--email-domain",
            action="append",
            default=[],
            dest="email_domains",
            help="email domain of the agency's staff (repeatable)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        agency = agency_create(
            actor=CLI,
            slug=options["slug"],
            name=options["name"],
            country=options["country"],
            timezone=options["timezone"],
            language=options["language"],
            email_domains=options["email_domains"],
        )
        self.stdout.write(f"Created agency {agency.slug} ({agency.name}).")
