from django.core.management.base import BaseCommand, CommandError

from pairwise.services.backup import BackupError, backup


class Command(BaseCommand):
    help = (
        "Back up the database to one file while the site keeps running: SQLite through its "
        "online backup API, PostgreSQL with pg_dump -Fc. Restore with `manage.py restore FILE`."
    )

    def add_arguments(self, parser):
        parser.add_argument("--out", required=True, help="the backup file to write")

    def handle(self, *args, **opts):
        try:
            result = backup(opts["out"])
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{result['engine']} backup: {result['file']} "
            f"({result['bytes'] / 1e6:.1f} MB in {result['seconds']:.1f} s)"
        )
