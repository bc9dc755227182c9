from django.core.management.base import BaseCommand, CommandError

from pairwise.services.scoring import score_study
from pairwise.services.studies import StudyError, find_study
from training.metrics import METRIC_KEYS, format_value


class Command(BaseCommand):
    help = (
        "Automatic metrics (BLEU, ROUGE-L, METEOR, BERTScore, Distinct, strategy) per checkpoint, "
        "with a note where its responses were generated unlike its training (window, budget)."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id or name")
        parser.add_argument("--no-bertscore", action="store_true")

    def handle(self, *args, **opts):
        try:
            study = find_study(opts["study"])
        except StudyError as exc:
            raise CommandError(str(exc)) from None
        results = score_study(study, bertscore=not opts["no_bertscore"])
        self.stdout.write("checkpoint\t" + "\t".join(METRIC_KEYS))
        for label, m in results.items():
            cells = [format_value(k, m[k], missing="–") for k in METRIC_KEYS]
            self.stdout.write(label + "\t" + "\t".join(cells))
        for label, m in results.items():
            for difference in m.get("differs_from_training", []):
                self.stdout.write(f"note: {label} was evaluated with {difference}")
