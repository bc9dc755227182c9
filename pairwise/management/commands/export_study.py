from django.core.management.base import BaseCommand, CommandError

from pairwise.services import audit
from pairwise.services.export import FORMATS, export_study
from pairwise.services.studies import StudyError, find_study


class Command(BaseCommand):
    help = "Export a study: long-format judgments, items, summary.json, publication tables."

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id or name")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--out", required=True, help="output folder")

    @audit.as_command("export_study")
    def handle(self, *args, **opts):
        try:
            study = find_study(opts["study"])
        except StudyError as exc:
            raise CommandError(str(exc)) from None
        for path in export_study(study, opts["format"], opts["out"]):
            self.stdout.write(str(path))
