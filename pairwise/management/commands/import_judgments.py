from django.core.management.base import BaseCommand, CommandError

from pairwise.services import audit
from pairwise.services.imports import import_judgments
from pairwise.services.longformat import LongFormatError


class Command(BaseCommand):
    help = (
        "Import judgments collected elsewhere, in the long format (CSV, JSON, JSONL or Parquet; "
        "see README, statistics). All or nothing: a bad row imports nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument(
            "--pandalm",
            action="store_true",
            help="the file is PandaLM's testset-v1.json; convert it to the long format first",
        )

    @audit.as_command("import_judgments")
    def handle(self, *args, **opts):
        path = opts["file"]
        try:
            if opts["pandalm"]:
                import tempfile
                from pathlib import Path

                from pairwise.services.pandalm import pandalm_to_long

                with tempfile.TemporaryDirectory() as tmp:
                    converted = Path(tmp) / "pandalm.csv"
                    pandalm_to_long(path).to_csv(converted, index=False)
                    counts = import_judgments(converted, source=path)
            else:
                counts = import_judgments(path)
        except LongFormatError as exc:
            raise CommandError(f"{path}: {exc}") from None
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(f"{path}: {exc}") from None
        self.stdout.write(
            f"imported {counts['judgments']} judgments on {counts['items']} items "
            f"({counts['studies']} new studies)"
        )
