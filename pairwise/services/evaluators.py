"""Evaluator profiles (issue #18, section 1): who the annotators were, as a datasheet reports it.

Researchers record, per account, expertise, language, whether and how much they were paid, how
they were recruited, the training given and whether they are an author of the study. No field
is required; an empty one means "not recorded". The admin, the study page, the API, the
`invite_annotators` command and invite links (`StudyInvite.profile`, applied to the accounts
made at /join/) all call `check_profile` and `set_profile`.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Mapping

from pairwise.models import Judgment, Profile, Study
from pairwise.services.errors import ServiceError

log = logging.getLogger(__name__)

TEXT_FIELDS = ("expertise", "language", "payment", "recruitment", "training")
FLAG_FIELDS = ("paid", "is_author")  # yes / no / unknown (None)
PROFILE_FIELDS = (
    "expertise",
    "language",
    "paid",
    "payment",
    "recruitment",
    "training",
    "is_author",
)
UNKNOWN = "unknown"
_TRUE = {"true", "yes", "1", "on", "paid", "author"}
_FALSE = {"false", "no", "0", "off", "unpaid", "not-author"}


class ProfileError(ServiceError):
    """A profile field is wrong; the message names it."""


def _max_length(field: str) -> int | None:
    return Profile._meta.get_field(field).max_length


def check_profile(data: Mapping | None, *, partial: bool = True) -> dict:
    """Profile fields from a form, a request body, command options or an invite, cleaned.

    Text fields are stripped and held to their column's length; `paid` and `is_author` take
    True/False/None or yes/no/true/false/1/0 ("" or None: unknown). Unknown keys are refused.
    `partial`: only the fields given are returned (otherwise every field, empty when absent).
    ProfileError names the field otherwise."""
    data = dict(data or {})
    unknown = sorted(set(data) - set(PROFILE_FIELDS))
    if unknown:
        raise ProfileError(unknown[0], f"not a profile field; expected {list(PROFILE_FIELDS)}")
    clean: dict = {} if partial else {f: ("" if f in TEXT_FIELDS else None) for f in PROFILE_FIELDS}
    for field, value in data.items():
        if field in FLAG_FIELDS:
            clean[field] = _flag(field, value)
            continue
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise ProfileError(field, f"expected text, got {type(value).__name__}")
        value = value.strip()
        limit = _max_length(field)
        if limit and len(value) > limit:
            raise ProfileError(field, f"at most {limit} characters, got {len(value)}")
        if field == "training" and len(value) > 5000:
            raise ProfileError("training", f"at most 5000 characters, got {len(value)}")
        clean[field] = value
    return clean


def _flag(field: str, value) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "unknown", "none", "null"):
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ProfileError(field, f"expected yes, no or empty (unknown), got {str(value)[:40]!r}")


def profile_from_form(params: Mapping) -> dict:
    """The profile fields a form filled in (empty ones left out: "not recorded"), checked."""
    return check_profile(
        {f: params.get(f) for f in PROFILE_FIELDS if str(params.get(f) or "").strip()}
    )


def set_profile(user, data: Mapping | None) -> Profile:
    """Record the given profile fields on `user`'s profile (made if missing); others stay."""
    clean = check_profile(data)
    profile, _ = Profile.objects.get_or_create(user=user)
    if clean:
        for field, value in clean.items():
            setattr(profile, field, value)
        profile.save(update_fields=list(clean))
        log.info("profile of user %s: set %s", user.pk, ", ".join(sorted(clean)))
    return profile


def profile_of(user_or_profile) -> dict:
    """The profile fields of an account (or of a Profile), empty ones included."""
    profile = user_or_profile
    if not isinstance(profile, Profile):
        profile = Profile.objects.filter(user=user_or_profile).first()
    if profile is None:
        return check_profile({}, partial=False)
    return {f: getattr(profile, f) for f in PROFILE_FIELDS}


def profiles(user_ids: Iterable[int]) -> dict[int, dict]:
    """{user id: profile fields} for the accounts that have a profile (one query)."""
    return {
        row["user_id"]: {f: row[f] for f in PROFILE_FIELDS}
        for row in Profile.objects.filter(user_id__in=list(user_ids)).values(
            "user_id", *PROFILE_FIELDS
        )
    }


def member_profiles(members: Iterable) -> dict[int, dict]:
    """{user id: profile fields} for study members (one query), every field present."""
    members = list(members)
    found = profiles(m.user_id for m in members)
    empty = check_profile({}, partial=False)
    return {m.user_id: found.get(m.user_id, empty) for m in members}


def count_profiles(rows: Iterable[Mapping]) -> dict:
    """Pure: {"annotators": n, field: {value: count}} over profile rows (one per annotator).

    Empty text and None flags count as "unknown"; flags count as "yes"/"no"."""
    rows = list(rows)
    out: dict = {"annotators": len(rows)}
    for field in PROFILE_FIELDS:
        counter: Counter = Counter()
        for row in rows:
            value = row.get(field)
            if field in FLAG_FIELDS:
                counter[UNKNOWN if value is None else ("yes" if value else "no")] += 1
            else:
                counter[(value or "").strip() or UNKNOWN] += 1
        out[field] = dict(sorted(counter.items(), key=lambda kv: (-kv[1], kv[0])))
    return out


def profile_counts(study: Study) -> dict:
    """How many of the annotators who judged `study` have each value of each profile field:
    {"annotators": n, "expertise": {"PhD psychology": 2, "unknown": 1}, "paid": {"yes": 3}, ...}.
    Imported and simulated judges count like the others."""
    judges = set(Judgment.objects.filter(study=study).values_list("annotator_id", flat=True))
    found = profiles(judges)
    empty = check_profile({}, partial=False)
    return count_profiles(found.get(uid, empty) for uid in sorted(judges))


def annotators_dataframe(study: Study):
    """The export's annotators table: one row per account that judged the study, with its
    participant id and profile fields (empty where not recorded)."""
    import pandas as pd

    from pairwise.models import Judgment as J

    judges = dict(
        J.objects.filter(study=study)
        .values_list("annotator_id", "annotator__username")
        .distinct()
        .order_by("annotator__username")
    )
    rows = {
        r["user_id"]: r
        for r in Profile.objects.filter(user_id__in=list(judges)).values(
            "user_id", "participant_id", *PROFILE_FIELDS
        )
    }
    columns = ["annotator", "participant_id", *PROFILE_FIELDS]
    out = []
    for uid, username in judges.items():
        row = rows.get(uid, {})
        out.append(
            {
                "annotator": username,
                "participant_id": row.get("participant_id", ""),
                **{f: row.get(f, "" if f in TEXT_FIELDS else None) for f in PROFILE_FIELDS},
            }
        )
    return pd.DataFrame(out, columns=columns)
