from django.core.management.base import BaseCommand, CommandError

from pairwise.services.simulate import simulate
from pairwise.services.studies import StudyError, find_study


class Command(BaseCommand):
    help = "Fill a study with simulated judgments (marked simulated everywhere, exports included)."

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id or name")
        parser.add_argument("--annotators", type=int, default=3)
        parser.add_argument(
            "--preference", type=float, default=0.8, help="P(system A wins) among decided items"
        )
        parser.add_argument("--tie-rate", type=float, default=0.1)
        parser.add_argument(
            "--agreement",
            type=float,
            default=0.8,
            help="P(an annotator reports the item's latent outcome)",
        )
        parser.add_argument("--seed", type=int, default=0)
        parser.add_argument(
            "--share",
            type=float,
            default=1.0,
            help="share of items to judge (the rest is left to people)",
        )

    def handle(self, *args, **opts):
        try:
            study = find_study(opts["study"])
        except StudyError as exc:
            raise CommandError(str(exc)) from None
        try:
            n = simulate(
                study,
                annotators=opts["annotators"],
                preference=opts["preference"],
                tie_rate=opts["tie_rate"],
                agreement=opts["agreement"],
                seed=opts["seed"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(f"{n} simulated judgments")
