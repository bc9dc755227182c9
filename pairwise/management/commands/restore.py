from django.core.management.base import BaseCommand, CommandError

from pairwise.services.backup import BackupError, restore


class Command(BaseCommand):
    help = (
        "Replace the database with a backup written by `manage.py backup` (SQLite file or "
        "pg_dump archive). Refuses to replace a database that holds data without --force."
    )

    def add_arguments(self, parser):
        parser.add_argument("file", help="the backup file")
        parser.add_argument(
            "--force", action="store_true", help="replace a database that holds data"
        )

    def handle(self, *args, **opts):
        try:
            report = restore(opts["file"], force=opts["force"])
        except BackupError as exc:
            raise CommandError(str(exc)) from None
        held = ", ".join(f"{v} {k}" for k, v in report["contents"].items())
        self.stdout.write(f"restored {opts['file']} in {report['seconds']:.1f} s: {held}")
        if report["unapplied_migrations"]:
            self.stdout.write(
                f"the backup predates {report['unapplied_migrations']} migrations: "
                "run `manage.py migrate` before serving"
            )
        if report.get("count_drift"):
            self.stderr.write(
                f"items whose judgment_count disagrees with their judgments: "
                f"{', '.join(report['count_drift'])}"
            )
