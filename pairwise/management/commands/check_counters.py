from django.core.management.base import BaseCommand, CommandError

from pairwise.services import audit, counters
from pairwise.services.studies import StudyError, find_study


class Command(BaseCommand):
    help = (
        "Recount the cached counters (each item's judgment_count, each study's open_items) and "
        "report any that disagree with the rows; --fix recounts them. Exits 1 on drift left."
    )

    def add_arguments(self, parser):
        parser.add_argument("--study", default=None, help="a study's id or name (default: all)")
        parser.add_argument("--fix", action="store_true", help="recount what disagrees")

    @audit.as_command("check_counters")
    def handle(self, *args, **opts):
        try:
            study = find_study(opts["study"]) if opts["study"] else None
        except StudyError as exc:
            raise CommandError(str(exc)) from None
        found = counters.fix(study) if opts["fix"] else counters.drift(study)
        for d in found:
            self.stdout.write(str(d))
        if not found:
            self.stdout.write("counters agree with the rows")
        elif opts["fix"]:
            self.stdout.write(f"fixed {len(found)} counters")
        else:
            raise CommandError(f"{len(found)} counters disagree; run with --fix to recount them")
