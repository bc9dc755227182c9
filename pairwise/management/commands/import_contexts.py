from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from pairwise.services import audit
from pairwise.services.contexts import import_contexts
from training.datasets import DatasetError


class Command(BaseCommand):
    help = "Create eval contexts (history, gold response, gold strategy) from a dataset split."

    def add_arguments(self, parser):
        parser.add_argument("--dataset", default="esconv")
        parser.add_argument("--split", default="test")
        parser.add_argument("--n", type=int, default=200)
        parser.add_argument("--seed", type=int, default=13)
        parser.add_argument("--window", type=int, default=10, help="turns of history (0 = all)")
        parser.add_argument("--data-dir", default=None, help="default: EVALSITE_DATA_DIR")
        parser.add_argument("--skip-invalid", action="store_true")

    @audit.as_command("import_contexts")
    def handle(self, *args, **opts):
        if opts["n"] < 1:
            raise CommandError("--n must be at least 1")
        try:
            contexts, created, report = import_contexts(
                opts["dataset"],
                opts["split"],
                n=opts["n"],
                seed=opts["seed"],
                window=opts["window"] or None,
                data_dir=opts["data_dir"] or settings.EVALSITE_DATA_DIR,
                skip_invalid=opts["skip_invalid"],
                progress=lambda it: tqdm(it, desc="contexts", disable=opts["verbosity"] == 0),
            )
        except DatasetError as exc:
            raise CommandError(str(exc)) from None
        if report is not None and report.skipped:
            self.stdout.write(f"--skip-invalid: {report.summary()}")
        self.stdout.write(
            f"{len(contexts)} contexts from {opts['dataset']}/{opts['split']}: "
            f"{created} new, {len(contexts) - created} already present"
        )
