"""Base for operator commands: every failure is one line on stderr and a non-zero exit."""

from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from visio_broker.errors import DomainError

USAGE_ERROR = 2


class OperatorCommand(BaseCommand):
    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        # Makes argparse raise CommandError instead of printing its multi-line usage block.
        parser.called_from_command_line = False
        return parser

    def run_from_argv(self, argv: list[str]) -> None:
        try:
            super().run_from_argv(argv)
        except CommandError as exc:
            # Argument errors surface here: Django parses arguments outside its own handler.
            message = str(exc).removeprefix("Error: ")
            self.stderr.write(f"error: {message} (see {argv[1]} --help)")
            sys.exit(USAGE_ERROR)

    def execute(self, *args: Any, **options: Any) -> str | None:
        try:
            return super().execute(*args, **options)
        except DomainError as exc:
            raise CommandError(f"{exc.message} [{exc.code}]") from None
