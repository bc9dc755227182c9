from django.core.management.base import BaseCommand, CommandError

from pairwise.models import Study
from pairwise.services.export import FORMATS, export_study


class Command(BaseCommand):
    help = "Export a study: long-format judgments, items, summary.json, publication tables."

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id or name")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--out", required=True, help="output folder")

    def handle(self, *args, **opts):
        ref = opts["study"]
        study = Study.objects.filter(pk=int(ref)).first() if ref.isdigit() else None
        study = study or Study.objects.filter(name=ref).first()
        if study is None:
            raise CommandError(f"study: no study with id or name {ref!r}")
        for path in export_study(study, opts["format"], opts["out"]):
            self.stdout.write(str(path))
