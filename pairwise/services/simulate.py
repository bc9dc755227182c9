"""Simulated annotators, so a demo's results page has data. Every judgment is marked simulated.

Each item gets a latent outcome for system A (win with probability `preference` among decided
items, tie with probability `tie_rate`); each simulated annotator reports it with probability
`agreement`, and otherwise answers uniformly at random. They lease and submit through the
allocator, so overlap k and one-judgment-per-annotator hold as for people.
"""

from __future__ import annotations

import random

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from pairwise.models import Study
from pairwise.outcomes import OUTCOMES
from pairwise.roles import ANNOTATOR
from pairwise.services import access, allocation


def simulated_annotators(n: int) -> list:
    User = get_user_model()
    group, _ = Group.objects.get_or_create(name=ANNOTATOR)
    users = []
    for i in range(1, n + 1):
        user, created = User.objects.get_or_create(username=f"simulated-{i}")
        if created:
            user.set_unusable_password()
            user.save(update_fields=["password"])
        user.groups.add(group)
        users.append(user)
    return users


def simulate(
    study: Study,
    *,
    annotators: int = 3,
    preference: float = 0.8,
    tie_rate: float = 0.1,
    agreement: float = 0.8,
    seed: int = 0,
    share: float = 1.0,
) -> int:
    """Fill the study's open items with simulated judgments; returns how many were made."""
    for name, value in (
        ("preference", preference),
        ("tie_rate", tie_rate),
        ("agreement", agreement),
    ):
        if not 0 <= value <= 1:
            raise ValueError(f"{name}: {value} is not between 0 and 1")
    users = simulated_annotators(annotators)
    # members like any annotator of the study (they judge through the allocator, not the site)
    access.add_members(study, users, ANNOTATOR)
    items = [
        i
        for i in study.items.order_by("pk")
        if random.Random(f"{seed}:share:{i.public_id}").random() < share
    ]
    made = 0
    for user in users:
        rng = random.Random(f"{seed}:{user.username}")
        for item in items:
            if not allocation.take(study, user, item):
                continue
            latent = random.Random(f"{seed}:{item.public_id}")
            if item.is_gold:
                truth = "a"
            elif latent.random() < tie_rate:
                truth = "tie"
            else:
                truth = "a" if latent.random() < preference else "b"
            a_side, b_side = ("left", "right") if item.a_on_left else ("right", "left")
            choices = {}
            for criterion in study.criteria:
                outcome = truth if rng.random() < agreement else rng.choice(OUTCOMES)
                choices[criterion] = {"a": a_side, "b": b_side, "tie": "tie"}[outcome]
            allocation.submit(
                study,
                user,
                item.public_id,
                choices,
                simulated_seconds=round(rng.uniform(15, 90), 1),
                simulated=True,
            )
            made += 1
    return made
