from django.core.management.base import BaseCommand, CommandError

from pairwise.services import audit
from pairwise.services.export import FORMATS, PREFERENCES, export_study
from pairwise.services.studies import StudyError, find_study


class Command(BaseCommand):
    help = (
        "Export a study: long-format judgments, items, summary.json, publication tables; "
        "or, with --format preferences, preferences.jsonl for DPO. Every format also writes "
        "the evaluation datasheet (datasheet.json/.md/.tex); --format datasheet writes only it."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id or name")
        parser.add_argument("--format", choices=FORMATS, default="csv")
        parser.add_argument("--out", required=True, help="output folder")
        parser.add_argument(
            "--keep-ties",
            action="store_true",
            help="preferences: keep tied items (chosen = A, rejected = B, tie = true)",
        )
        parser.add_argument(
            "--include-simulated",
            action="store_true",
            help="preferences: count simulated judgments too",
        )

    @audit.as_command("export_study")
    def handle(self, *args, **opts):
        try:
            study = find_study(opts["study"])
        except StudyError as exc:
            raise CommandError(str(exc)) from None
        for flag in ("keep_ties", "include_simulated"):
            if opts[flag] and opts["format"] != PREFERENCES:
                raise CommandError(
                    f"--{flag.replace('_', '-')}: only with --format {PREFERENCES}, "
                    f"not --format {opts['format']}"
                )
        written = export_study(
            study,
            opts["format"],
            opts["out"],
            keep_ties=opts["keep_ties"],
            include_simulated=opts["include_simulated"],
        )
        for path in written:
            self.stdout.write(str(path))
