"""Who may reach which study: the one home of the per-study access rule.

Roles (`pairwise.roles`) say what an account does; membership (`StudyMember`) says where:

- admins see, judge and manage every study;
- researchers see, manage and export the studies they own or were added to as researchers;
- annotators see and judge the studies they were added to as annotators, by a researcher or
  by following an invite link (`StudyInvite`).

Pages and the API answer 404 for a study the caller may not reach (never 403: that would say
it exists), and a study list lists only the caller's. Creating a study makes its creator the
owner (`studies.create_study`). Everything that adds, removes or enrols goes through here, so
pages, the API and `manage.py study_members` apply the same checks.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from pairwise import roles
from pairwise.models import Lease, Profile, Study, StudyInvite, StudyMember
from pairwise.services import sql
from pairwise.services.errors import ServiceError

log = logging.getLogger(__name__)

Role = StudyMember.Role
RESEARCH_ROLES = (Role.OWNER.value, Role.RESEARCHER.value)
# roles a researcher can give; the owner is the creator (an admin may hand a study over in the
# admin)
ASSIGNABLE_ROLES = (Role.ANNOTATOR.value, Role.RESEARCHER.value)
# what crowd platforms pass in the link (Prolific: PROLIFIC_PID), or our own name for it
PARTICIPANT_PARAMS = ("PROLIFIC_PID", "participant")
PARTICIPANT_ID = re.compile(r"[A-Za-z0-9_-]{1,100}")
COMPLETION_CODE = re.compile(r"[A-Za-z0-9_-]{1,32}")
MAX_INVITE_DAYS = 365


class AccessError(ServiceError):
    """Bad input for a membership or invite operation; the message names the field."""


class InviteNotFound(AccessError):
    """No invite has this token (the page answers 404)."""


class InviteGone(AccessError):
    """The invite was revoked, has expired, or its study is closed (the page answers 410)."""

    def __init__(self, invite: StudyInvite, state: str) -> None:
        self.invite = invite
        self.state = state
        super().__init__("invite", f"this link is {state}")


# --- Roles: who judges, who researches ---------------------------------------------------------


def may_judge(user) -> bool:
    """The account's role judges items (annotators; admins too, to try a study out)."""
    return roles.is_annotator(user) or roles.is_admin(user)


def may_research(user) -> bool:
    """The account's role manages studies (researchers and admins)."""
    return roles.is_researcher(user)


# --- Which studies -----------------------------------------------------------------------------


def annotated_studies(user) -> QuerySet[Study]:
    """The studies `user` may judge, any status: all for admins, their memberships as an
    annotator otherwise."""
    if roles.is_admin(user):
        return Study.objects.all()
    if not roles.is_annotator(user):
        return Study.objects.none()
    return Study.objects.filter(members__user=user, members__role=Role.ANNOTATOR)


def managed_studies(user) -> QuerySet[Study]:
    """The studies `user` may see, manage and export as a researcher: all for admins, the ones
    they own or were added to as a researcher otherwise."""
    if roles.is_admin(user):
        return Study.objects.all()
    if not roles.is_researcher(user):
        return Study.objects.none()
    return Study.objects.filter(members__user=user, members__role__in=RESEARCH_ROLES)


def may_annotate(user, study: Study) -> bool:
    """`user` may judge `study`'s items (whatever its status)."""
    return study_to_annotate(user, study.pk) is not None


def may_manage(user, study: Study) -> bool:
    """`user` may see `study`'s page and results, export it, re-queue, and manage members."""
    return managed_studies(user).filter(pk=study.pk).exists()


def study_to_annotate(user, study_id: int, *, open_only: bool = False) -> Study | None:
    """The study `user` may judge (`open_only`: only while it is open), or None (the caller
    answers 404): the rule of `annotated_studies` for one study, which the pages, the annotator
    API and `may_annotate` all ask here. In SQL, one query: every annotator request asks, and
    building the ORM's query cost more CPU than the database spends answering it."""
    if not may_judge(user):
        return None
    params = {
        "study": study_id,
        "any_status": not open_only,
        "open": Study.Status.OPEN.value,
        "admin": roles.is_admin(user),
        "user": user.pk,
        "role": Role.ANNOTATOR.value,
    }
    found = sql.fetch(sql.study_to_annotate(connection.vendor), params)
    return sql.instance(Study, found[0]) if found else None


# --- Members -----------------------------------------------------------------------------------


def _users(names: Iterable) -> list:
    """Accounts by username (or the accounts themselves); AccessError naming every unknown."""
    User = get_user_model()
    wanted = list(dict.fromkeys(names))
    given = [u for u in wanted if isinstance(u, User)]
    names = [str(n).strip() for n in wanted if not isinstance(n, User)]
    if not given and not names:
        raise AccessError("usernames", "give at least one")
    found = {u.username: u for u in User.objects.filter(username__in=names)}
    unknown = [n for n in names if n not in found]
    if unknown:
        raise AccessError("usernames", f"no account called {', '.join(map(repr, unknown))}")
    return given + [found[n] for n in names]


def check_members(study: Study, names: Iterable, role: str) -> list:
    """Validate an addition before anything is written: the accounts exist, the role is one a
    researcher can give, and each account's role group fits it (an annotator membership means
    nothing to an account that does not judge). Returns the accounts."""
    if role not in ASSIGNABLE_ROLES:
        raise AccessError("role", f"expected one of {list(ASSIGNABLE_ROLES)}, got {role!r}")
    users = _users(names)
    fits = roles.is_annotator if role == Role.ANNOTATOR else roles.is_researcher
    misfits = [u.username for u in users if not fits(u)]
    if misfits:
        raise AccessError(
            "usernames",
            f"{', '.join(map(repr, misfits))} not in the {role} role "
            f"(give it with `manage.py invite_annotators NAME --role {role}`)",
        )
    return users


def add_members(study: Study, names: Iterable, role: str, by=None) -> list[StudyMember]:
    """Make accounts (or usernames) members of `study` in `role` (annotator or researcher); all
    or nothing. A member already there takes the new role, except the owner, who stays owner.
    `by`: who did it (None: an operator, e.g. a management command)."""
    users = check_members(study, names, role)
    out = []
    with transaction.atomic():
        for user in users:
            member, created = StudyMember.objects.get_or_create(
                study=study, user=user, defaults={"role": role, "added_by": by}
            )
            if not created and member.role not in (role, Role.OWNER):
                log.info(
                    "study %s: user %s changes from %s to %s", study.pk, user.pk, member.role, role
                )
                member.role = role
                member.save(update_fields=["role"])
            out.append(member)
    log.info(
        "study %s: %s added as %s by %s",
        study.pk,
        [u.username for u in users],
        role,
        by.username if by else "an operator",
    )
    return out


def remove_members(study: Study, names: Iterable, by=None) -> int:
    """Take accounts off `study`; all or nothing. Their judgments stay; their leases go back to
    the pool. Only an admin (or an operator: `by` None) may remove the owner. Returns how many
    memberships were removed."""
    users = _users(names)
    members = {m.user_id: m for m in StudyMember.objects.filter(study=study, user__in=users)}
    strangers = [u.username for u in users if u.pk not in members]
    if strangers:
        raise AccessError(
            "usernames", f"{', '.join(map(repr, strangers))} not a member of study {study.pk}"
        )
    owners = [u.username for u in users if members[u.pk].role == Role.OWNER]
    if owners and by is not None and not roles.is_admin(by):
        raise AccessError(
            "usernames", f"{owners[0]!r} owns study {study.pk}; only an admin can remove the owner"
        )
    with transaction.atomic():
        StudyMember.objects.filter(pk__in=[m.pk for m in members.values()]).delete()
        Lease.objects.filter(item__study=study, annotator__in=users).delete()
    log.info(
        "study %s: %s removed by %s",
        study.pk,
        [u.username for u in users],
        by.username if by else "an operator",
    )
    return len(members)


def make_owner(study: Study, user) -> StudyMember:
    """`user` owns `study` (its creator). Used when a study is created."""
    member, created = StudyMember.objects.get_or_create(
        study=study, user=user, defaults={"role": Role.OWNER, "added_by": user}
    )
    if not created and member.role != Role.OWNER:
        member.role = Role.OWNER
        member.save(update_fields=["role"])
    return member


def members(study: Study) -> list[StudyMember]:
    """The study's members, owner and researchers first, then annotators by name."""
    order = {Role.OWNER: 0, Role.RESEARCHER: 1, Role.ANNOTATOR: 2}
    found = StudyMember.objects.filter(study=study).select_related("user", "added_by", "invite")
    return sorted(found, key=lambda m: (order.get(m.role, 3), m.user.username))


# --- Invite links ------------------------------------------------------------------------------


def check_participant_id(value: str | None) -> str:
    """A participant id from a link: empty, or 1-100 of [A-Za-z0-9_-] (AccessError naming the
    parameter otherwise)."""
    value = (value or "").strip()
    if value and not PARTICIPANT_ID.fullmatch(value):
        raise AccessError(
            "participant",
            f"expected at most 100 letters, digits, '_' or '-' (got {len(value)} characters)",
        )
    return value


def participant_from(params) -> str:
    """The participant id a crowd platform put in the link (?PROLIFIC_PID= or ?participant=)."""
    given = [params.get(name) for name in PARTICIPANT_PARAMS if params.get(name)]
    if len(set(given)) > 1:
        raise AccessError("participant", "PROLIFIC_PID and participant differ; give one")
    return check_participant_id(given[0] if given else "")


def create_invite(
    study: Study,
    by=None,
    *,
    completion_code: str | None = None,
    expires_in_days: int | None = None,
    profile: dict | None = None,
) -> StudyInvite:
    """A new revocable link that enrols whoever follows it as an annotator of `study`.

    `completion_code`: shown when the annotator is done; give the one your crowd platform
    issued (Prolific does), or a random one is drawn. `expires_in_days`: none by default.
    `profile`: evaluator profile fields (services/evaluators.py) given to the accounts the link
    makes; ProfileError names a bad one."""
    from pairwise.services.evaluators import check_profile

    profile = check_profile(profile)
    if study.status == Study.Status.CLOSED:
        raise AccessError("study", f"{study.name!r} is closed; reopen it to invite annotators")
    code = (completion_code or "").strip()
    if code and not COMPLETION_CODE.fullmatch(code):
        raise AccessError("completion_code", "expected 1-32 letters, digits, '_' or '-'")
    expires_at = None
    if expires_in_days is not None:
        if isinstance(expires_in_days, bool) or not 1 <= int(expires_in_days) <= MAX_INVITE_DAYS:
            raise AccessError(
                "expires_in_days", f"expected 1 to {MAX_INVITE_DAYS}, got {expires_in_days!r}"
            )
        expires_at = timezone.now() + timedelta(days=int(expires_in_days))
    invite = StudyInvite.objects.create(
        study=study,
        created_by=by,
        expires_at=expires_at,
        profile=profile,
        **({"completion_code": code} if code else {}),
    )
    log.info("study %s: invite %s created by %s", study.pk, invite.pk, by or "an operator")
    return invite


def revoke_invite(invite: StudyInvite, by=None) -> StudyInvite:
    """Withdraw a link: following it answers 410 from now on. Enrolled annotators stay."""
    if invite.revoked_at is None:
        invite.revoked_at = timezone.now()
        invite.save(update_fields=["revoked_at"])
        log.info(
            "study %s: invite %s revoked by %s", invite.study_id, invite.pk, by or "an operator"
        )
    return invite


def invite_state(invite: StudyInvite, now: datetime | None = None) -> str:
    """'active', or why the link no longer enrols: 'revoked', 'expired', or 'closed' (the
    study ended)."""
    now = now or timezone.now()
    if invite.revoked_at is not None:
        return "revoked"
    if invite.expires_at is not None and invite.expires_at <= now:
        return "expired"
    if invite.study.status == Study.Status.CLOSED:
        return "closed"
    return "active"


def find_invite(token: str) -> StudyInvite:
    """The active invite with this token; InviteNotFound or InviteGone otherwise."""
    invite = (
        StudyInvite.objects.select_related("study").filter(token=str(token)[:64]).first()
        if token
        else None
    )
    if invite is None:
        raise InviteNotFound("invite", "no invite link has this token")
    state = invite_state(invite)
    if state != "active":
        raise InviteGone(invite, state)
    return invite


def _returning_participant(invite: StudyInvite, participant_id: str):
    """The account this link made earlier for the same participant id, if any: a participant who
    comes back (another browser, a lost session) continues where they were instead of starting
    again as a stranger who would be shown the same replies twice. Only accounts the link made
    (no password, annotator only) are reused."""
    if not participant_id:
        return None
    member = (
        StudyMember.objects.filter(
            study=invite.study,
            invite__isnull=False,
            role=Role.ANNOTATOR,
            user__profile__participant_id=participant_id,
            user__is_staff=False,
            user__is_superuser=False,
        )
        .select_related("user")
        .order_by("pk")
        .first()
    )
    if member is None or member.user.has_usable_password():
        return None
    return member.user


def _new_participant_account(participant_id: str):
    User = get_user_model()
    while True:
        username = f"participant-{secrets.token_hex(5)}"
        user, created = User.objects.get_or_create(username=username)
        if created:
            break
    user.set_unusable_password()
    user.save(update_fields=["password"])
    user.groups.add(Group.objects.get_or_create(name=roles.ANNOTATOR)[0])
    Profile.objects.update_or_create(user=user, defaults={"participant_id": participant_id})
    return user


class Enrolment:
    """What `accept_invite` did: the account (new, returning or the caller's) and its
    membership."""

    def __init__(self, user, member: StudyMember, new_account: bool) -> None:
        self.user = user
        self.member = member
        self.new_account = new_account


def accept_invite(token: str, user=None, participant_id: str = "") -> Enrolment:
    """Follow an invite link: enrol `user` as an annotator of the invite's study.

    `user` None (or anonymous): a crowd platform sent someone without an account. They get one
    (a random username, no password, the annotator role, `participant_id` on the profile), or,
    when the same participant id came through this study's links before, that account again.
    A signed-in account must be an annotator (AccessError otherwise). Raises InviteNotFound or
    InviteGone for a link that does not enrol."""
    participant_id = check_participant_id(participant_id)
    with transaction.atomic():
        invite = find_invite(token)
        study = invite.study
        new_account = False
        if user is None or not user.is_authenticated:
            user = _returning_participant(invite, participant_id)
            if user is None:
                user = _new_participant_account(participant_id)
                new_account = True
                if invite.profile:  # what the researcher recorded for this link's recruits
                    from pairwise.services.evaluators import set_profile

                    set_profile(user, invite.profile)
        elif not roles.is_annotator(user):
            raise AccessError(
                "account",
                f"{user.username!r} is not an annotator; invite links enrol annotators "
                "(open the link in a private window to try it as a participant)",
            )
        elif participant_id:
            profile, _ = Profile.objects.get_or_create(user=user)
            if not profile.participant_id:
                profile.participant_id = participant_id
                profile.save(update_fields=["participant_id"])
            elif profile.participant_id != participant_id:
                log.warning(
                    "user %s followed invite %s with participant id %r but has %r; kept",
                    user.pk,
                    invite.pk,
                    participant_id,
                    profile.participant_id,
                )
        member, created = StudyMember.objects.get_or_create(
            study=study,
            user=user,
            defaults={"role": Role.ANNOTATOR, "invite": invite, "added_by": invite.created_by},
        )
        if not created and member.invite_id is None and member.role == Role.ANNOTATOR:
            member.invite = invite  # shows this link's completion code at the end
            member.save(update_fields=["invite"])
        if created:
            StudyInvite.objects.filter(pk=invite.pk).update(uses=F("uses") + 1)
    log.info(
        "study %s: user %s enrolled through invite %s%s",
        study.pk,
        user.pk,
        invite.pk,
        " (new account)" if new_account else "",
    )
    return Enrolment(user, member, new_account)


def completion_code(user, study: Study) -> str | None:
    """The completion code to show `user` at the end of `study`: the one of the invite link they
    came through, if any."""
    if not user or not user.is_authenticated:
        return None
    return (
        StudyMember.objects.filter(study=study, user=user, invite__isnull=False)
        .values_list("invite__completion_code", flat=True)
        .first()
    )


def participant_ids(user_ids: Iterable[int]) -> dict[int, str]:
    """Participant ids (from invite links) of these accounts; accounts without one are left
    out."""
    return dict(
        Profile.objects.filter(user_id__in=list(user_ids))
        .exclude(participant_id="")
        .values_list("user_id", "participant_id")
    )
