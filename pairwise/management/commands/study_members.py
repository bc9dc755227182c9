"""Manage who may reach a study: list, add or remove members, and create or revoke invite links.

    python manage.py study_members STUDY --list
    python manage.py study_members STUDY --add NAME... [--role annotator|researcher]
    python manage.py study_members STUDY --remove NAME...
    python manage.py study_members STUDY --invite [--completion-code CODE] [--expires DAYS]
        [--expertise TEXT --language TEXT --paid|--unpaid --payment TEXT --recruitment TEXT
         --training TEXT --author|--not-author]   (profile of the accounts the link makes)
    python manage.py study_members STUDY --revoke-invite ID

STUDY is an id or a name. Additions and removals are all or nothing: an unknown account, or one
not in the role, stops the command before anything is written. The command runs as an operator
(with the rights of an admin): it may remove a study's owner.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from pairwise.management.commands._profile_options import (
    add_profile_arguments,
    profile_from_options,
)
from pairwise.models import StudyInvite
from pairwise.services import access, audit
from pairwise.services.studies import StudyError, find_study


class Command(BaseCommand):
    help = (
        "List, add or remove a study's members (annotators, researchers), or create or revoke "
        "an invite link that enrols whoever follows it as an annotator."
    )

    def add_arguments(self, parser):
        parser.add_argument("study", help="study id or name")
        what = parser.add_mutually_exclusive_group()
        what.add_argument("--list", action="store_true", help="list the members (the default)")
        what.add_argument("--add", nargs="+", metavar="NAME", help="usernames to add")
        what.add_argument("--remove", nargs="+", metavar="NAME", help="usernames to remove")
        what.add_argument(
            "--invite", action="store_true", help="create an invite link and print its URL"
        )
        what.add_argument("--revoke-invite", type=int, metavar="ID", help="revoke invite link ID")
        parser.add_argument(
            "--role",
            choices=access.ASSIGNABLE_ROLES,
            default="annotator",
            help="role of the accounts added (default: annotator)",
        )
        parser.add_argument(
            "--completion-code",
            default=None,
            help="with --invite: the code shown when an annotator is done (e.g. Prolific's); "
            "random when absent",
        )
        parser.add_argument(
            "--expires", type=int, metavar="DAYS", default=None, help="with --invite: days valid"
        )
        parser.add_argument(
            "--base-url",
            default="http://127.0.0.1:8000",
            help="with --invite: the site's address as annotators reach it "
            "(default: %(default)s, what `serve` listens on)",
        )
        add_profile_arguments(parser)

    def handle(self, *args, **opts):
        try:
            study = find_study(opts["study"])
        except StudyError as exc:
            raise CommandError(str(exc)) from None
        with audit.as_command("study_members"):
            self._act(study, opts)

    def _act(self, study, opts) -> None:
        try:
            if opts["add"]:
                added = access.add_members(study, opts["add"], opts["role"])
                names = ", ".join(m.user.username for m in added)
                self.stdout.write(
                    f"study {study.pk} ({study.name}): {names} added as {opts['role']}"
                )
            elif opts["remove"]:
                n = access.remove_members(study, opts["remove"])
                self.stdout.write(f"study {study.pk} ({study.name}): {n} members removed")
            elif opts["invite"]:
                invite = access.create_invite(
                    study,
                    completion_code=opts["completion_code"],
                    expires_in_days=opts["expires"],
                    profile=profile_from_options(opts),
                )
                self._print_invite(invite, opts["base_url"])
            elif opts["revoke_invite"] is not None:
                invite = StudyInvite.objects.filter(pk=opts["revoke_invite"], study=study).first()
                if invite is None:
                    raise CommandError(
                        f"--revoke-invite: study {study.pk} has no invite link "
                        f"{opts['revoke_invite']}"
                    )
                access.revoke_invite(invite)
                self.stdout.write(f"invite link {invite.pk} of study {study.pk} revoked")
            else:
                self._list(study, opts["base_url"])
        except access.AccessError as exc:
            raise CommandError(str(exc)) from None

    def _url(self, invite: StudyInvite, base_url: str) -> str:
        return base_url.rstrip("/") + reverse("join", args=[invite.token])

    def _print_invite(self, invite: StudyInvite, base_url: str) -> None:
        expires = invite.expires_at.isoformat() if invite.expires_at else "never"
        self.stdout.write(
            f"invite link {invite.pk} of study {invite.study_id} (expires: {expires}; "
            f"completion code {invite.completion_code}):"
        )
        self.stdout.write(self._url(invite, base_url))
        self.stdout.write(
            "crowd platforms: append ?PROLIFIC_PID={{%PROLIFIC_PID%}} (Prolific) or "
            "?participant=ID to keep the participant id"
        )

    def _list(self, study, base_url: str) -> None:
        self.stdout.write(f"study {study.pk} ({study.name}), {study.status}")
        members = access.members(study)
        for m in members:
            via = (
                f"invite {m.invite_id}"
                if m.invite_id
                else (f"added by {m.added_by.username}" if m.added_by else "added by an operator")
            )
            self.stdout.write(f"  {m.user.username:<24} {m.role:<10} {via}")
        if not members:
            self.stdout.write("  no members")
        for invite in study.invites.select_related("study"):
            self.stdout.write(
                f"  invite {invite.pk}: {access.invite_state(invite)}, {invite.uses} enrolled, "
                f"code {invite.completion_code}, {self._url(invite, base_url)}"
            )
