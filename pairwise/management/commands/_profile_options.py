"""Evaluator-profile options shared by `invite_annotators` and `study_members --invite`
(services/evaluators.py). The leading underscore keeps Django from taking it for a command."""

from __future__ import annotations

from django.core.management.base import CommandError


def add_profile_arguments(parser) -> None:
    """--expertise --language --paid/--unpaid --payment --recruitment --training
    --author/--not-author; none is required, and one left out is not changed."""
    group = parser.add_argument_group("evaluator profile (all optional)")
    group.add_argument("--expertise", help='e.g. "PhD psychology"')
    group.add_argument("--language", help='e.g. "native English"')
    paid = group.add_mutually_exclusive_group()
    paid.add_argument("--paid", dest="paid", action="store_const", const=True, default=None)
    paid.add_argument("--unpaid", dest="paid", action="store_const", const=False)
    group.add_argument("--payment", help='how much, e.g. "15 GBP/hour"')
    group.add_argument("--recruitment", help='how recruited, e.g. "Prolific"')
    group.add_argument("--training", help="training given before judging")
    author = group.add_mutually_exclusive_group()
    author.add_argument(
        "--author", dest="is_author", action="store_const", const=True, default=None
    )
    author.add_argument("--not-author", dest="is_author", action="store_const", const=False)


def profile_from_options(opts: dict) -> dict:
    """The profile fields given on the command line, checked; CommandError names a bad one."""
    from pairwise.services.evaluators import PROFILE_FIELDS, ProfileError, check_profile

    given = {f: opts[f] for f in PROFILE_FIELDS if opts.get(f) is not None}
    try:
        return check_profile(given)
    except ProfileError as exc:
        raise CommandError(f"--{str(exc).replace('is_author', 'author')}") from None
