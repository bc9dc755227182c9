"""Factories for the evaluation models; responses come from here until generation runs."""

from __future__ import annotations

import itertools

import factory
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group

from pairwise import models as m
from pairwise.services.sampling import sampling_key

_seq = itertools.count()


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")

    @factory.post_generation
    def password(self, create, extracted, **kwargs):
        self.set_password(extracted or "pw-123456")
        if create:
            self.save(update_fields=["password"])

    @factory.post_generation
    def role(self, create, extracted, **kwargs):
        if extracted:
            group, _ = Group.objects.get_or_create(name=extracted)
            self.groups.add(group)


def annotator(*studies, **kw):
    """An account in the annotator role, member (annotator) of `studies`."""
    user = UserFactory(role="annotator", **kw)
    for study in studies:
        join(study, user)
    return user


def researcher(*studies, **kw):
    """An account in the researcher role, member (researcher) of `studies`."""
    user = UserFactory(role="researcher", **kw)
    for study in studies:
        join(study, user, role=m.StudyMember.Role.RESEARCHER)
    return user


def join(study, *users, role=m.StudyMember.Role.ANNOTATOR):
    """Make `users` members of `study` (annotators by default): per-study access lets an
    account reach only the studies it belongs to. Returns the users."""
    for user in users:
        m.StudyMember.objects.update_or_create(study=study, user=user, defaults={"role": role})
    return users


class SystemFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.System
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"system-{n}")


class CheckpointFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.Checkpoint

    system = factory.SubFactory(SystemFactory)
    version = factory.Sequence(lambda n: n + 1)
    backend = "fake"


class EvalContextFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = m.EvalContext

    source = "esconv"
    dialogue_id = factory.Sequence(lambda n: f"esconv/test/{n}")
    turn_index = 3
    history = factory.LazyFunction(
        lambda: [
            {"speaker": "seeker", "text": "I lost my job last week.", "strategy": None},
            {
                "speaker": "supporter",
                "text": "I'm so sorry. How are you coping?",
                "strategy": "Question",
            },
            {"speaker": "seeker", "text": "Not well, I can't sleep.", "strategy": None},
        ]
    )
    gold_response = factory.Sequence(
        lambda n: f"That sounds exhausting ({n}). Sleep loss makes everything harder."
    )
    gold_strategy = "Reflection of feelings"


def make_study(
    *,
    n_contexts: int = 6,
    systems=("CARE", "ESConv"),
    baselines=None,
    k: int = 3,
    status=m.Study.Status.OPEN,
    criteria=None,
    with_responses: bool = True,
    **study_kw,
):
    """An open study: A = systems[0] against each other system, responses made by hand."""
    from pairwise.services.items import build_items

    checkpoints = [CheckpointFactory(system=SystemFactory(name=s)) for s in systems]
    contexts = [EvalContextFactory() for _ in range(n_contexts)]
    study = m.Study.objects.create(
        name=f"study-{next(_seq)}",
        overlap_k=k,
        status=status,
        criteria=list(criteria or m.DEFAULT_CRITERIA),
        **study_kw,
    )
    study.contexts.set(contexts)
    for other in checkpoints[1:]:
        m.Comparison.objects.create(study=study, checkpoint_a=checkpoints[0], checkpoint_b=other)
    if with_responses:
        key = sampling_key(study.sampling)
        for ck in checkpoints:
            for ctx in contexts:
                m.Response.objects.create(
                    checkpoint=ck,
                    context=ctx,
                    sampling_key=key,
                    text=f"reply {ck.pk}-{ctx.pk}",  # never a system name: that is a reveal
                    parse_status=m.Response.ParseStatus.NO_REASONING,
                )
        build_items(study)
    return study, checkpoints, contexts
