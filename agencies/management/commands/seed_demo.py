from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.management.base import CommandError
from django.db import transaction

from agencies.models import Agency, Role, User
from agencies.services import agency_create, user_create
from visio_broker.audit import CLI
from visio_broker.commands import OperatorCommand

# Well-known demo password: seed_demo refuses to run in production for that reason.
DEMO_PASSWORD = "visio-demo-2026"  # noqa: S105


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
        self.stdout.write(
            f"Demo data ready ({created} new records). Password for every demo login: "
            f"{DEMO_PASSWORD}"
        )
        self.stdout.write("Admins are asked to set up two-factor authentication at first sign-in.")
        for spec in DEMO_AGENCIES:
            self.stdout.write(f"  {spec.name}:")
            for local, role, _name in spec.people:
                self.stdout.write(f"    {role:<10} {local}@{spec.domain}")
