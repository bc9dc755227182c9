"""The audit log: who opened, closed or re-queued a study, registered a checkpoint, exported or
imported data, and when.

Rows are django-auditlog `LogEntry`s, read by admins in the admin (pairwise/admin.py). Role and
membership changes (users' groups, `StudyMember`, `StudyInvite`) are logged by auditlog itself
from model signals (`AUDITLOG_INCLUDE_TRACKING_MODELS` in settings); the study life cycle,
registration, export and import are actions rather than row changes, so their services call
`record` here. The annotator hot path (next, submit) records nothing.

The actor is the user passed in (views, the API and the admin pass `request.user`). A management
command has no user: it runs inside `as_command(name)`, and its rows carry the command's name and
the operating-system user instead.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
from collections.abc import Iterator
from contextvars import ContextVar

from auditlog.cid import get_cid
from auditlog.middleware import AuditlogMiddleware as _AuditlogMiddleware
from auditlog.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.utils.functional import SimpleLazyObject

log = logging.getLogger(__name__)

# what the log says happened; `additional_data["action"]` holds one of these
ACTIONS = (
    "open",
    "close",
    "reopen",
    "requeue",
    "register",
    "export",
    "import",
    "invite",
    "edit_criterion",
    "set_guidelines",
)

_command: ContextVar[dict | None] = ContextVar("audit_command", default=None)


def _os_user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry (some containers)
        return "unknown"


@contextlib.contextmanager
def as_command(name: str) -> Iterator[None]:
    """Rows recorded inside come from management command `name`, run by the OS user. Also a
    decorator: `@audit.as_command("requeue")` on a command's `handle`."""
    token = _command.set({"via": "command", "command": name, "os_user": _os_user()})
    try:
        yield
    finally:
        _command.reset(token)


def record(action: str, obj, actor=None, **details) -> LogEntry:
    """Write one audit row: `actor` did `action` to `obj`, now.

    `obj` is a model instance, or a model class for an action on many rows (importing
    contexts). `details` (JSON-serialisable) describe it: a format, a file, counts. An anonymous
    or missing actor is stored as none; inside a web request the auditlog middleware fills in
    the signed-in user, and inside `as_command` the command and OS user are recorded."""
    if action not in ACTIONS:
        raise ValueError(f"action: {action!r} is not one of {list(ACTIONS)}")
    if actor is not None and not getattr(actor, "is_authenticated", False):
        actor = None
    data = {"action": action, **details}
    origin = _command.get()
    if origin is not None:
        data = {**origin, **data}
    elif actor is None:  # a script or task of our own: say who ran it
        data["os_user"] = _os_user()
    fields = {
        "action": LogEntry.Action.ACCESS,
        "actor": actor,
        "changes_text": action,
        "additional_data": data,
    }
    if isinstance(obj, type):  # a model class: no one row is the object
        entry = LogEntry.objects.create(
            content_type=ContentType.objects.get_for_model(obj),
            object_pk="",
            object_repr=str(details.get("source") or obj._meta.verbose_name_plural),
            cid=get_cid(),
            **fields,
        )
    else:
        entry = LogEntry.objects.log_create(obj, force_log=True, **fields)
    who = actor or (origin and f"{origin['command']} ({origin['os_user']})") or "no user"
    pk = "-" if isinstance(obj, type) else obj.pk
    log.info("audit: %s %s %s by %s", action, obj._meta.model_name, pk, who)
    return entry


def entries_for(obj):
    """The audit rows about `obj`, newest first."""
    return LogEntry.objects.get_for_object(obj).order_by("-timestamp", "-pk")


class AuditlogMiddleware(_AuditlogMiddleware):
    """auditlog's middleware, reading the request's user when a row is written rather than when
    the request arrives: an API call signed with a token has its user only once DRF has
    authenticated it, inside the view. A request that writes no row never loads its user here."""

    def get_extra_data(self, request):
        return {
            "remote_addr": self._get_remote_addr(request),
            "remote_port": self._get_remote_port(request),
            "actor": SimpleLazyObject(lambda: self._get_actor(request)),
        }
