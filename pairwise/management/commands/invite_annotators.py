import secrets

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError

from pairwise.roles import ROLES


class Command(BaseCommand):
    help = "Create accounts with one-time passwords (printed once) in a role group."

    def add_arguments(self, parser):
        parser.add_argument("usernames", nargs="+")
        parser.add_argument("--role", choices=ROLES, default="annotator")
        parser.add_argument("--reset", action="store_true", help="new password for existing users")

    def handle(self, *args, **opts):
        User = get_user_model()
        group, _ = Group.objects.get_or_create(name=opts["role"])
        for name in opts["usernames"]:
            if not name.isidentifier() and not name.replace("-", "").replace(".", "").isalnum():
                raise CommandError(
                    f"username: {name!r} has characters other than letters, digits, '-', '.', '_'"
                )
            user, created = User.objects.get_or_create(username=name)
            if not created and not opts["reset"]:
                self.stdout.write(f"{name}: exists (use --reset for a new password)")
                user.groups.add(group)
                continue
            password = secrets.token_urlsafe(9)
            user.set_password(password)
            user.is_staff = opts["role"] == "admin"
            user.is_superuser = opts["role"] == "admin"
            user.save()
            user.groups.add(group)
            self.stdout.write(f"{name}\t{opts['role']}\t{password}")
