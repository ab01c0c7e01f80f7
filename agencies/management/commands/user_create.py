import sys
from argparse import ArgumentParser
from typing import Any

from django.core.management.base import CommandError

from agencies.models import Agency, Role
from agencies.services import member_invite, user_create
from visio_broker.audit import CLI
from visio_broker.commands import OperatorCommand


class Command(OperatorCommand):
    help = (
        "Create a user in an agency. With --password-stdin the password is read from standard "
        "input; otherwise an invitation email lets the user choose one."
    )

    def add_arguments(self, parser: ArgumentParser) -> None:
        parser.add_argument("email")
        parser.add_argument("--agency", required=True, help="agency slug")
        parser.add_argument("--role", required=True, choices=Role.values)
        parser.add_argument("--name", default="", help="display name")
        parser.add_argument(
            "--password-stdin",
            action="store_true",
            help="read the password from the first line of standard input",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        agency = Agency.objects.filter(slug=options["agency"]).first()
        if agency is None:
            raise CommandError(f"No agency with slug {options['agency']!r}.")
        if not options["password_stdin"]:
            membership = member_invite(
                actor=CLI,
                agency=agency,
                email=options["email"],
                role=options["role"],
                display_name=options["name"],
                check_email_domain=False,
            )
            self.stdout.write(f"Created {membership.user.email}; invitation sent by email.")
            return
        password = sys.stdin.readline().rstrip("\r\n")
        if not password:
            raise CommandError("--password-stdin given but standard input has no password.")
        user = user_create(
            actor=CLI,
            email=options["email"],
            agency=agency,
            role=options["role"],
            display_name=options["name"],
            password=password,
        )
        self.stdout.write(
            f"Created {user.email} ({options['role']} of {agency.slug}); the address is "
            "confirmed by email at first sign-in."
        )
