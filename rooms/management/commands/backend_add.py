from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from agencies.models import Agency
from rooms.models import BackendKind
from rooms.services import backend_create
from visio_broker.audit import CLI
from visio_broker.commands import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Register a LiveKit or Jitsi media backend. The signing secret is never given on the "
        "command line: name the environment variable (--secret-env) or the file (--secret-file) "
        "that holds it, in every web and worker process; it must be readable now, and only its "
        "source is stored. For Jitsi, --api-key is the app id and --jitsi-sub the token's "
        "`sub` (XMPP domain, tenant or *); without --jitsi-sub the URL's host name is used, "
        "which fits a Debian install (docker-jitsi-meet usually needs --jitsi-sub meet.jitsi)."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("name", help="unique slug, e.g. lk-paris-1")
        parser.add_argument("--kind", required=True, choices=BackendKind.values)
        parser.add_argument(
            "--url",
            metavar="URL",
            required=True,
            help="LiveKit: server URL clients connect to (wss://, ws://, https://, http://); "
            "Jitsi: web URL (https://, http://)",
        )
        owner = parser.add_mutually_exclusive_group(required=True)
        owner.add_argument("--agency", metavar="SLUG", help="agency that owns the backend")
        owner.add_argument(
            "--shared", action="store_true", help="usable by every agency of this instance"
        )
        parser.add_argument(
            "--capacity",
            required=True,
            type=int,
            metavar="N",
            help="concurrent participants, at least 1",
        )
        parser.add_argument("--country", required=True, metavar="CC", help="ISO 3166 code, e.g. FR")
        parser.add_argument(
            "--api-key",
            required=True,
            metavar="KEY",
            help="LiveKit API key, or Jitsi app id (not secret)",
        )
        secret = parser.add_mutually_exclusive_group(required=True)
        secret.add_argument("--secret-env", metavar="VAR", help="environment variable")
        secret.add_argument("--secret-file", metavar="PATH", help="absolute path of a file")
        parser.add_argument(
            "--jitsi-sub", metavar="DOMAIN", default="", help="Jitsi token sub (default: URL host)"
        )
        parser.add_argument(
            "--frontend-url",
            metavar="URL",
            default="",
            help="LiveKit: web front-end taking ?liveKitUrl=…&token=… (LiveKit Meet's /custom)",
        )
        parser.add_argument(
            "--health-url",
            metavar="URL",
            default="",
            help="where the health probe looks (default: the URL, over http(s) for LiveKit)",
        )
        parser.add_argument(
            "--weight", type=int, default=100, metavar="N", help="preference (default 100)"
        )
        parser.add_argument(
            "--region", default="", metavar="R", help="free-form region, e.g. eu-west"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        agency = None
        if options["agency"]:
            agency = Agency.objects.filter(slug=options["agency"]).first()
            if agency is None:
                raise CommandError(f"No agency with slug {options['agency']!r}.")
        backend = backend_create(
            actor=CLI,
            name=options["name"],
            kind=options["kind"],
            base_url=options["url"],
            agency=agency,
            capacity=options["capacity"],
            country=options["country"],
            api_key=options["api_key"],
            secret_env=options["secret_env"] or "",
            secret_file=options["secret_file"] or "",
            jitsi_sub=options["jitsi_sub"],
            frontend_url=options["frontend_url"],
            health_url=options["health_url"],
            weight=options["weight"],
            region=options["region"],
        )
        owner = agency.slug if agency else "shared"
        line = (
            f"Created backend {backend.name} ({backend.kind}, {owner}, {backend.country}, "
            f"capacity {backend.capacity})"
        )
        if backend.kind == BackendKind.JITSI:
            line += f"; Jitsi token sub {backend.jitsi_sub}"
        self.stdout.write(f"{line}.")
