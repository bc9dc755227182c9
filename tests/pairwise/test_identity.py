"""Identity reveals: a reply naming a system, its checkpoint or its backbone is never shown."""

import pytest
from django.test import Client

from pairwise.models import Checkpoint, Response
from pairwise.services import identity, studies
from pairwise.services.eligibility import eligible_by_context
from pairwise.services.items import add_gold_items, build_items
from pairwise.services.sampling import sampling_key
from tests.factories import CheckpointFactory, EvalContextFactory, make_study, researcher

pytestmark = pytest.mark.django_db

LLAMA_LINEAGE = {
    "system": "ESConv",
    "config": {"DataArguments": {"model_name_or_path": "meta-llama/Llama-3.1-8B-Instruct"}},
    "parent": {"path": "meta-llama/Llama-3.1-8B-Instruct", "lineage_sha256": None},
}


def _study_with_replies(replies_a, replies_b, **study_kw):
    """A CARE-vs-ESConv study with the given replies (one per context), ESConv on Llama and
    CARE from the folder /ckpt/care-sft-rl."""
    study, (care, base), contexts = make_study(
        n_contexts=len(replies_a), with_responses=False, **study_kw
    )
    # registered checkpoints are immutable through save(); set up the fixture with update()
    Checkpoint.objects.filter(pk=care.pk).update(path="/ckpt/care-sft-rl")
    Checkpoint.objects.filter(pk=base.pk).update(lineage=LLAMA_LINEAGE)
    key = sampling_key(study.sampling)
    for ck, replies in ((care, replies_a), (base, replies_b)):
        for ctx, text in zip(contexts, replies, strict=True):
            Response.objects.create(
                checkpoint=ck,
                context=ctx,
                sampling_key=key,
                text=text,
                parse_status=Response.ParseStatus.NO_REASONING,
            )
    return study, care, base, contexts


def test_patterns_come_from_names_folders_and_backbones():
    study, *_ = _study_with_replies(["a"], ["b"])
    sources = [p.source for p in identity.study_patterns(study)]
    for name in ("CARE", "ESConv", "care-sft-rl", "Llama-3.1-8B-Instruct", "Llama"):
        assert name in sources, name


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        ("As a Llama model, I cannot feel, but I hear you.", "Llama"),
        ("as a llama model I can't judge", "Llama"),  # a mixed-case name: any case
        ("I'm Llama 3.1 8B Instruct, here for you.", "Llama-3.1-8B-Instruct"),
        ("I am CARE, a support assistant.", "CARE"),
        ("The ESConv team trained me.", "ESConv"),
        ("my weights are in care-sft-rl", "care-sft-rl"),
        ("I care about you and I'm here.", None),  # CARE is an acronym: only as written
        ("Take care, and be kind to yourself.", None),
        ("Llamas are calm animals.", None),  # word boundaries
    ],
)
def test_reveals_names_on_word_boundaries_and_acronyms_as_written(text, pattern):
    study, *_ = _study_with_replies(["a"], ["b"])
    assert identity.reveals(study, text) == pattern


def test_flagged_replies_are_kept_out_of_items_counted_and_listed(client):
    study, care, base, contexts = _study_with_replies(
        [
            "I care about you.",  # kept
            "As CARE I suggest a walk.",  # flagged: system name
            "That sounds hard.",
            "It sounds lonely.",
        ],
        [
            "What happened next?",
            "How do you feel?",
            "As a Llama model, I cannot help with that.",  # flagged: backbone family
            "I was saved in care-sft-rl.",  # flagged: the opponent's checkpoint folder
        ],
    )
    assert build_items(study) == 1
    assert list(study.items.values_list("context_id", flat=True)) == [contexts[0].pk]
    flagged = identity.flagged_responses(study)
    assert [(f["checkpoint"], f["context_id"], f["pattern"]) for f in flagged] == [
        (care.label, contexts[1].pk, "CARE"),
        (base.label, contexts[2].pk, "Llama"),
        (base.label, contexts[3].pk, "care-sft-rl"),
    ]
    assert flagged[0]["text"] == "As CARE I suggest a walk." and flagged[0]["response_id"]
    assert studies.study_overview(study)["identity_flagged"] == 3
    client.force_login(researcher(study, username="id-res"))
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="identity-flagged"' in page and "As a Llama model" in page
    assert "3 replies name a system" in page


def test_a_researchers_patterns_are_checked_too():
    study, *_ = _study_with_replies(
        ["My developers at the lab say hi.", "Fine."],
        ["Okay.", "Sure."],
        identity_patterns=[r"(?i)\bmy developers?\b"],
    )
    assert identity.reveals(study, "my developer told me") == r"(?i)\bmy developers?\b"
    assert build_items(study) == 1


@pytest.mark.parametrize(
    ("patterns", "message"),
    [
        (["ok", "(unclosed"], r"identity_patterns\[1\]: '\(unclosed' is not a valid regular"),
        (["a*"], r"identity_patterns\[0\]: 'a\*' matches an empty text"),
        ([""], r"identity_patterns\[0\]: expected a non-empty regular expression"),
        ("Llama", "identity_patterns: expected a list"),
    ],
)
def test_a_bad_pattern_is_refused_at_study_creation(patterns, message):
    a, b = CheckpointFactory(), CheckpointFactory()
    with pytest.raises(studies.StudyError, match=message):
        studies.create_study(
            "bad patterns", contexts=[EvalContextFactory()], pairs=[(a, b)],
            identity_patterns=patterns,
        )  # fmt: skip


def test_gold_reference_and_control_replies_are_not_filtered():
    study, *_ = _study_with_replies(["a", "b"], ["c", "d"], gold_controls=["I am CARE."])
    context = study.contexts.first()
    context.gold_response = "CARE helped me once; how are you?"  # a human's words
    context.save()
    assert add_gold_items(study, 1) == 1
    gold = study.items.get(is_gold=True)
    key = sampling_key(study.sampling)
    for response in (gold.response_a, gold.response_b):
        found = eligible_by_context(study, response.checkpoint_id, key, [gold.context_id])
        assert gold.context_id in found
    assert identity.flagged_responses(study) == []


def test_the_admin_refuses_a_bad_pattern():
    from pairwise.admin import StudyForm

    study, *_ = _study_with_replies(["a"], ["b"])
    form = StudyForm(
        instance=study,
        data={
            **{f: getattr(study, f) for f in ("name", "overlap_k", "status", "seed", "exposure")},
            "criteria": '["overall"]',
            "sampling": "{}",
            "identity_patterns": '["(bad"]',
            "gold_controls": "[]",
            "gold_share": 0,
            "lease_ttl_seconds": 60,
        },
    )
    assert not form.is_valid()
    assert "is not a valid regular expression" in str(form.errors["identity_patterns"])


def test_study_page_renders_without_flags():
    study, *_ = _study_with_replies(["Hi."], ["Hello."])
    client = Client()
    client.force_login(researcher(study, username="id-res2"))
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="identity-count"' in page and 'id="identity-flagged"' not in page
