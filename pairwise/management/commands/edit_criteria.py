"""Edit a study's criteria definitions or guidelines; list their versions.

    python manage.py edit_criteria STUDY                       # list versions
    python manage.py edit_criteria STUDY --criterion NAME --definition TEXT
    python manage.py edit_criteria STUDY --guidelines FILE     # "-" reads standard input

A criterion no judgment was made under changes in place; otherwise it gets a new version that
judgments from now on record, while earlier judgments keep theirs (services/criteria.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from pairwise.services import audit, criteria
from pairwise.services.studies import StudyError, find_study


class Command(BaseCommand):
    help = "Edit a study's criterion definitions or guidelines (versioned); list the versions."

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id or name")
        parser.add_argument("--criterion", metavar="NAME", help="the criterion to edit")
        parser.add_argument("--definition", metavar="TEXT", help="its new verbatim definition")
        parser.add_argument(
            "--guidelines", metavar="FILE", help="new guidelines (Markdown) from FILE, or - (stdin)"
        )

    def handle(self, *args, **opts):
        try:
            study = find_study(opts["study"])
        except StudyError as exc:
            raise CommandError(str(exc)) from None
        if (opts["criterion"] is None) != (opts["definition"] is None):
            raise CommandError("--criterion and --definition: give both, or neither")
        with audit.as_command("edit_criteria"):
            try:
                if opts["criterion"] is not None:
                    row = criteria.edit_criterion(study, opts["criterion"], opts["definition"])
                    self.stdout.write(f"study {study.pk}: {row.name} is now v{row.version}")
                if opts["guidelines"] is not None:
                    version = criteria.set_guidelines(study, self._read(opts["guidelines"]))
                    self.stdout.write(f"study {study.pk}: guidelines {version.sha256}")
            except criteria.CriteriaError as exc:
                raise CommandError(str(exc)) from None
        self._list(study)

    def _read(self, name: str) -> str:
        if name == "-":
            return sys.stdin.read()
        path = Path(name)
        try:
            return path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"--guidelines: cannot read {path}: {exc}") from None

    def _list(self, study) -> None:
        for row in criteria.criteria_table(study):
            mark = "*" if row["current"] else " "
            self.stdout.write(
                f"{mark} {row['name']} v{row['version']} ({row['judgments']} judgments): "
                f"{row['definition']}"
            )
        for row in criteria.guideline_table(study):
            mark = "*" if row["current"] else " "
            self.stdout.write(f"{mark} guidelines {row['sha256']} ({row['judgments']} judgments)")
