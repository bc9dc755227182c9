"""The site evaluates a checkpoint as it was trained: the history window, the completion budget
and the prompt convention recorded in its lineage.json (``generation``), and says where a
study's responses were generated otherwise (score_study)."""

import io

import pytest
from django.core.management import call_command

from models.base import prompt_hash
from pairwise.models import Response
from pairwise.services import studies
from pairwise.services.scoring import score_study
from tests.factories import CheckpointFactory, EvalContextFactory, SystemFactory
from training.datasets.types import Turn
from training.prompts import to_messages

pytestmark = pytest.mark.django_db(transaction=True)

HISTORY = [  # ends on the supporter: the next supporter turn follows a supporter turn
    {"speaker": "seeker", "text": "I lost my job last week.", "strategy": None},
    {"speaker": "supporter", "text": "I'm so sorry.", "strategy": "Others"},
    {"speaker": "seeker", "text": "I can't sleep.", "strategy": None},
    {"speaker": "supporter", "text": "That sounds hard.", "strategy": "Reflection of feelings"},
]


def _generation(window, budget, placeholder=None):
    return {"generation": {"window": window, "max_new_tokens": budget,
                           "seeker_placeholder": placeholder}}  # fmt: skip


def _study(care_lineage, esconv_lineage=None, *, sampling=None, care_config=None, window=10):
    care = CheckpointFactory(
        system=SystemFactory(name="CARE"), reasoning=True, lineage=care_lineage,
        backend_config=care_config or {},
    )  # fmt: skip
    esconv = CheckpointFactory(system=SystemFactory(name="ESConv"), lineage=esconv_lineage or {})
    contexts = [EvalContextFactory(history=HISTORY, window=window) for _ in range(2)]
    study = studies.create_study(
        "defaults", contexts=contexts, pairs=[(care, esconv)],
        sampling=sampling or {"temperature": 0.7, "max_new_tokens": 32},
    )  # fmt: skip
    studies.open_study(study)
    return study, care, esconv


def test_a_reasoning_checkpoint_gets_its_trained_window_budget_and_convention():
    study, care, _ = _study(_generation(2, 100))
    for r in Response.objects.filter(checkpoint=care):
        p = r.provenance
        # the chain and reply may use the whole trained budget on top of the reply's
        assert (p["reply_tokens"], p["reasoning_tokens"], p["max_new_tokens"]) == (32, 100, 132)
        assert p["reasoning_tokens_from"] == "checkpoint"
        assert (p["window"], p["trained_window"], p["trained_max_new_tokens"]) == (2, 2, 100)
        last_two = [Turn.from_dict(t) for t in HISTORY[-2:]]
        assert p["prompt_hash"] == prompt_hash(to_messages(last_two, care=True))  # no "..."
    result = score_study(study, bertscore=False)[care.label]
    assert result["differs_from_training"] == []
    assert result["generated_with"]["window"] == [2]


def test_the_study_budget_wins_when_set_and_a_legacy_checkpoint_keeps_its_placeholder():
    legacy = {"config": {"GRPOArguments": {"window": 3}, "GRPOConfig": {}}}
    sampling = {"max_new_tokens": 32, "reasoning_tokens": 40}
    _, care, _ = _study(legacy, sampling=sampling)
    for r in Response.objects.filter(checkpoint=care):
        p = r.provenance
        assert (p["reasoning_tokens"], p["reasoning_tokens_from"], p["max_new_tokens"]) == (
            40, "study", 72,
        )  # fmt: skip
        # trained before the ESConv convention: prompted with the "..." seeker turn it saw
        turns = [Turn.from_dict(t) for t in HISTORY[-3:]]
        assert p["prompt_hash"] == prompt_hash(
            to_messages(turns, care=True, seeker_placeholder="...")
        )
        assert p["seeker_placeholder"] == "..."


def test_score_study_names_every_way_generation_differed_from_training():
    # CARE: an explicit prompt_window of 4 against a trained 2; the baseline: the study's reply
    # budget (the same for every system) below the longest reply it was trained on
    study, care, esconv = _study(
        _generation(2, 100), _generation(None, 120), care_config={"prompt_window": 4}, window=3
    )
    results = score_study(study, bertscore=False)
    assert results[care.label]["differs_from_training"] == ["history window [3], trained with 2"]
    assert results[esconv.label]["differs_from_training"] == [
        "history window [3], trained with None",
        "max_new_tokens [32], below the 120 it trained with",
    ]
    out = io.StringIO()
    call_command("score_study", str(study.pk), "--no-bertscore", stdout=out)
    text = out.getvalue()
    assert f"note: {care.label} was evaluated with history window [3], trained with 2" in text
    assert "Unk_Stra" in text.splitlines()[0]
