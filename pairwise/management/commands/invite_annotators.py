from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from pairwise.management.commands._profile_options import (
    add_profile_arguments,
    profile_from_options,
)
from pairwise.roles import ROLES
from pairwise.services import accounts, audit, evaluators


class Command(BaseCommand):
    help = (
        "Create accounts with one-time passwords (printed once) in a role group. The account "
        "sets its own password at first login; with --expires DAYS the one-time password is "
        "refused after DAYS days."
    )

    def add_arguments(self, parser):
        parser.add_argument("usernames", nargs="+")
        parser.add_argument("--role", choices=ROLES, default="annotator")
        parser.add_argument("--reset", action="store_true", help="new password for existing users")
        parser.add_argument(
            "--expires",
            type=int,
            metavar="DAYS",
            help="the one-time password stops working after DAYS days (default: never)",
        )
        add_profile_arguments(parser)  # recorded on every account named, new or existing

    @audit.as_command("invite_annotators")
    def handle(self, *args, **opts):
        if opts["expires"] is not None and opts["expires"] <= 0:
            raise CommandError(f"--expires: expected a number of days > 0, got {opts['expires']}")
        profile = profile_from_options(opts)
        User = get_user_model()
        group, _ = Group.objects.get_or_create(name=opts["role"])
        for name in opts["usernames"]:
            if not name.isidentifier() and not name.replace("-", "").replace(".", "").isalnum():
                raise CommandError(
                    f"username: {name!r} has characters other than letters, digits, '-', '.', '_'"
                )
            user, created = User.objects.get_or_create(username=name)
            if profile:
                evaluators.set_profile(user, profile)
            if not created and not opts["reset"]:
                self.stdout.write(f"{name}: exists (use --reset for a new password)")
                user.groups.add(group)
                continue
            user.is_staff = opts["role"] == "admin"
            user.is_superuser = opts["role"] == "admin"
            user.save()
            password = accounts.issue_one_time_password(user, expires_days=opts["expires"])
            user.groups.add(group)
            audit.record("invite", user, role=opts["role"], new_password=True)
            expiry = f"\texpires in {opts['expires']} days" if opts["expires"] else ""
            self.stdout.write(f"{name}\t{opts['role']}\t{password}{expiry}")
