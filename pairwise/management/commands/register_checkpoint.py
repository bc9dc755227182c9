from django.core.management.base import BaseCommand, CommandError

from pairwise.services import audit
from pairwise.services.checkpoints import CheckpointError, register_checkpoint


class Command(BaseCommand):
    help = "Register a trained checkpoint folder (with its lineage.json) as a system version."

    def add_arguments(self, parser):
        parser.add_argument("path")
        parser.add_argument("--system", help="default: the system named in lineage.json")
        parser.add_argument("--backend", choices=["vllm", "hf", "http", "fake"])
        parser.add_argument("--as-version", dest="as_version", type=int, help="default: next")

    @audit.as_command("register_checkpoint")
    def handle(self, *args, **opts):
        try:
            checkpoint = register_checkpoint(
                opts["path"],
                system=opts["system"],
                backend=opts["backend"],
                version=opts["as_version"],
            )
        except CheckpointError as exc:
            raise CommandError(str(exc)) from None
        parent = f" (parent {checkpoint.parent.label})" if checkpoint.parent else ""
        self.stdout.write(f"registered {checkpoint.label}{parent} [id {checkpoint.pk}]")
