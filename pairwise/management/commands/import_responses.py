from django.core.management.base import BaseCommand, CommandError

from pairwise.services import audit
from pairwise.services.checkpoints import resolve_checkpoint
from pairwise.services.responses import ResponseImportError, import_responses
from pairwise.services.studies import StudyError, find_study


class Command(BaseCommand):
    help = (
        "Import responses generated elsewhere: JSONL lines {context_id, text, reasoning?}. "
        "All or nothing; errors name the line."
    )

    def add_arguments(self, parser):
        parser.add_argument("file")
        parser.add_argument(
            "--checkpoint",
            required=True,
            help='checkpoint id, "System vN", or a system name (its latest)',
        )
        parser.add_argument("--study", help="use this study's sampling key (default: default)")

    @audit.as_command("import_responses")
    def handle(self, *args, **opts):
        try:
            checkpoint = resolve_checkpoint(opts["checkpoint"])
            study = find_study(opts["study"]) if opts["study"] else None
            result = import_responses(checkpoint, opts["file"], study=study)
        except (ValueError, StudyError, ResponseImportError) as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"imported {result['responses']} responses for {checkpoint.label} "
            f"({result['unusable']} without a clean reply); {result['items']} new items"
        )
