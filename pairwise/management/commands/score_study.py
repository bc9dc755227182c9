from django.core.management.base import BaseCommand, CommandError

from pairwise.models import Study
from pairwise.services.scoring import score_study
from training.metrics import METRIC_KEYS


class Command(BaseCommand):
    help = (
        "Automatic metrics (BLEU, ROUGE-L, METEOR, BERTScore, Distinct, strategy) per checkpoint."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id or name")
        parser.add_argument("--no-bertscore", action="store_true")

    def handle(self, *args, **opts):
        ref = opts["study"]
        study = Study.objects.filter(pk=int(ref)).first() if ref.isdigit() else None
        study = study or Study.objects.filter(name=ref).first()
        if study is None:
            raise CommandError(f"study: no study with id or name {ref!r}")
        results = score_study(study, bertscore=not opts["no_bertscore"])
        self.stdout.write("checkpoint\t" + "\t".join(METRIC_KEYS))
        for label, m in results.items():
            cells = ["–" if m[k] is None else f"{m[k]:.2f}" for k in METRIC_KEYS]
            self.stdout.write(label + "\t" + "\t".join(cells))
