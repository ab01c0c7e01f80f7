import os
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.db import transaction

from agencies.models import Agency, Role, User
from agencies.services import agency_create, user_create
from rooms.models import BackendKind, MediaBackend
from rooms.services import backend_create
from visio_broker.audit import CLI
from visio_broker.commands import OperatorCommand

# Well-known demo password: seed_demo refuses to run in production for that reason.
DEMO_PASSWORD = "visio-demo-2026"  # noqa: S105

# Demo video backends. LiveKit: `livekit-server --dev` on this machine (key devkey, secret
# "secret"); Jitsi: docker-jitsi-meet's defaults. Their secrets come from these variables, which
# run_embedded (`make run`) sets to these demo values when they are unset.
DEMO_BACKEND_SECRETS = {
    "DEMO_LIVEKIT_SECRET": "secret",
    "DEMO_JITSI_SECRET": "visio-demo-jitsi-app-secret-not-for-production",
}
DEMO_LIVEKIT_URL = "http://localhost:7880"
DEMO_LIVEKIT_FRONTEND = "https://meet.livekit.io"
DEMO_JITSI_URL = "https://localhost:8443"


@dataclass(frozen=True)
class DemoAgency:
    slug: str
    name: str
    country: str
    timezone: str
    language: str
    domain: str
    people: tuple[tuple[str, Role, str], ...]


DEMO_AGENCIES = (
    DemoAgency(
        slug="fr-numerique",
        name="Ministère de la Transformation numérique",
        country="FR",
        timezone="Europe/Paris",
        language="fr",
        domain="numerique.gouv.example",
        people=(
            ("admin", Role.ADMIN, "Camille Martin"),
            ("organizer", Role.ORGANIZER, "Julien Bernard"),
            ("organizer2", Role.ORGANIZER, "Sophie Laurent"),
            ("member", Role.MEMBER, "Luc Moreau"),
            ("member2", Role.MEMBER, "Inès Garcia"),
        ),
    ),
    DemoAgency(
        slug="de-bdv",
        name="Bundesamt für Digitale Verwaltung",
        country="DE",
        timezone="Europe/Berlin",
        language="en",
        domain="bdv.bund.example",
        people=(
            ("admin", Role.ADMIN, "Anna Schmidt"),
            ("organizer", Role.ORGANIZER, "Lukas Müller"),
            ("member", Role.MEMBER, "Lea Fischer"),
            ("member2", Role.MEMBER, "Jonas Weber"),
        ),
    ),
    DemoAgency(
        slug="nl-bzk",
        name="Ministerie van Binnenlandse Zaken",
        country="NL",
        timezone="Europe/Amsterdam",
        language="en",
        domain="minbzk.overheid.example",
        people=(
            ("admin", Role.ADMIN, "Sanne de Vries"),
            ("organizer", Role.ORGANIZER, "Daan Jansen"),
            ("member", Role.MEMBER, "Emma Bakker"),
            ("member2", Role.MEMBER, "Lars Visser"),
        ),
    ),
)


class Command(OperatorCommand):
    help = "Create demo agencies and users (idempotent) and print the demo logins."

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("seed_demo creates well-known passwords; refusing in production.")
        created = 0
        with transaction.atomic():
            for spec in DEMO_AGENCIES:
                agency = Agency.objects.filter(slug=spec.slug).first()
                if agency is None:
                    agency = agency_create(
                        actor=CLI,
                        slug=spec.slug,
                        name=spec.name,
                        country=spec.country,
                        timezone=spec.timezone,
                        language=spec.language,
                        email_domains=[spec.domain],
                    )
                    created += 1
                for local, role, name in spec.people:
                    email = f"{local}@{spec.domain}"
                    if User.objects.filter(email__iexact=email).exists():
                        continue
                    user_create(
                        actor=CLI,
                        email=email,
                        agency=agency,
                        role=role,
                        display_name=name,
                        password=DEMO_PASSWORD,
                        email_verified=True,
                    )
                    created += 1
        backends = self._seed_backends()
        self.stdout.write(
            f"Demo data ready ({created} new records). Password for every demo login: "
            f"{DEMO_PASSWORD}"
        )
        self.stdout.write(
            f"Demo video backends: {backends} new (LiveKit and Jitsi per agency, one shared)."
        )
        self.stdout.write("Admins are asked to set up two-factor authentication at first sign-in.")
        for spec in DEMO_AGENCIES:
            self.stdout.write(f"  {spec.name}:")
            for local, role, _name in spec.people:
                self.stdout.write(f"    {role:<10} {local}@{spec.domain}")

    def _seed_backends(self) -> int:
        """One LiveKit and one Jitsi backend owned by each demo agency, plus a shared LiveKit."""
        for name, value in DEMO_BACKEND_SECRETS.items():
            # Demo only (this command refuses production): the secret must be readable now.
            os.environ.setdefault(name, value)
        wanted: list[dict[str, Any]] = [
            {
                "name": "shared-livekit",
                "kind": BackendKind.LIVEKIT,
                "country": "FR",
                "agency": None,
                "capacity": 500,
                "weight": 10,
            }
        ]
        for spec in DEMO_AGENCIES:
            agency = Agency.objects.get(slug=spec.slug)
            for kind, capacity, weight in (
                (BackendKind.LIVEKIT, 200, 100),
                (BackendKind.JITSI, 100, 50),
            ):
                wanted.append(
                    {
                        "name": f"{spec.slug}-{kind.value}",
                        "kind": kind,
                        "country": spec.country,
                        "agency": agency,
                        "capacity": capacity,
                        "weight": weight,
                    }
                )
        created = 0
        with transaction.atomic():
            for backend in wanted:
                if MediaBackend.objects.filter(name=backend["name"]).exists():
                    continue
                livekit = backend["kind"] == BackendKind.LIVEKIT
                backend_create(
                    actor=CLI,
                    base_url=DEMO_LIVEKIT_URL if livekit else DEMO_JITSI_URL,
                    frontend_url=DEMO_LIVEKIT_FRONTEND if livekit else "",
                    api_key="devkey" if livekit else "visio-demo",
                    secret_env="DEMO_LIVEKIT_SECRET" if livekit else "DEMO_JITSI_SECRET",
                    jitsi_sub="" if livekit else "meet.jitsi",
                    **backend,
                )
                created += 1
        return created
