from django.core.management.base import BaseCommand, CommandError

from pairwise.models import Checkpoint
from pairwise.services import audit, studies
from pairwise.services.studies import StudyError, find_study


class Command(BaseCommand):
    help = "Bring a new checkpoint into a study: generate what is missing, add its comparisons."

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id or name")
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--checkpoint", type=int, help="checkpoint id")
        group.add_argument("--latest", metavar="SYSTEM", help="the latest checkpoint of SYSTEM")

    @audit.as_command("requeue")
    def handle(self, *args, **opts):
        try:
            study = find_study(opts["study"])
        except StudyError as exc:
            raise CommandError(str(exc)) from None
        try:
            if opts["checkpoint"]:
                checkpoint = Checkpoint.objects.filter(pk=opts["checkpoint"]).first()
                if checkpoint is None:
                    raise CommandError(f"checkpoint: no checkpoint with id {opts['checkpoint']}")
            else:
                checkpoint = studies.latest_checkpoint(opts["latest"])
            result = studies.requeue(study, checkpoint)
        except studies.StudyError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"{checkpoint.label}: {result['comparisons_added']} new comparisons, "
            f"{result['batches']} generation batches, {result['items']} new items"
        )
