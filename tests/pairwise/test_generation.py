"""The generation pipeline with the fake backend, tasks run eagerly (real workers: integration)."""

import pytest
from django.db import transaction

from pairwise.models import ComparisonItem, GenerationBatch, Response, Study
from pairwise.services import generation, studies
from pairwise.services.items import build_items
from pairwise.tasks import generate_batch
from tests.factories import CheckpointFactory, EvalContextFactory, SystemFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _study(n=5, *, care_config=None, batch_size=2, name="gen", sampling=None):
    care = CheckpointFactory(
        system=SystemFactory(name="CARE"), reasoning=True, backend_config=care_config or {}
    )
    esconv = CheckpointFactory(system=SystemFactory(name="ESConv"))
    contexts = [EvalContextFactory() for _ in range(n)]
    study = studies.create_study(
        name,
        contexts=contexts,
        pairs=[(care, esconv)],
        sampling=sampling or {"temperature": 0.7, "max_new_tokens": 32},
    )
    return study, care, esconv, contexts


def test_open_generates_every_response_and_builds_balanced_items(settings):
    settings.GENERATION_BATCH_SIZE = 2
    study, care, esconv, _ = _study(5)
    result = studies.open_study(study)
    assert result["batches"] == 6  # 2 checkpoints x ceil(5 / 2)
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    assert Response.objects.count() == 10
    care_responses = Response.objects.filter(checkpoint=care)
    assert all(r.parse_status == "complete" and r.reasoning and r.usable for r in care_responses)
    assert all("<think>" not in r.text for r in care_responses)  # only the reply is shown
    assert set(
        Response.objects.filter(checkpoint=esconv).values_list("parse_status", flat=True)
    ) == {"no_reasoning"}
    r = care_responses.first()
    for key in (
        "backend",
        "backend_version",
        "sampling",
        "seed",
        "prompt_hash",
        "prompt_tokens",
        "completion_tokens",
        "lineage",
        "generated_at",
    ):
        assert key in r.provenance, key
    assert r.provenance["lineage"] == [f"CARE v{care.version}"]
    items = ComparisonItem.objects.filter(study=study)
    assert items.count() == 5
    left = items.filter(a_on_left=True).count()
    assert abs(left - (5 - left)) <= 1
    progress = generation.generation_progress(study)
    assert (progress["generated"], progress["needed"], progress["batches_remaining"]) == (10, 10, 0)


def test_running_a_batch_twice_is_a_no_op():
    study, *_ = _study(3)
    studies.open_study(study)
    before = list(Response.objects.order_by("pk").values_list("pk", "text"))
    for batch in GenerationBatch.objects.all():
        GenerationBatch.objects.filter(pk=batch.pk).update(status="pending")
        generate_batch.delay(batch.pk)
    assert list(Response.objects.order_by("pk").values_list("pk", "text")) == before
    assert ComparisonItem.objects.count() == 3


def test_requeue_and_reopen_queue_nothing_new():
    study, *_ = _study(3)
    studies.open_study(study)
    assert generation.queue_study(study) == []
    assert studies.open_study(study)["batches"] == 0


def test_malformed_outputs_are_kept_marked_and_left_out_of_items(settings):
    settings.GENERATION_BATCH_SIZE = 20
    study, care, *_ = _study(20, care_config={"malformed_rate": 1.0})
    studies.open_study(study)
    care_rows = Response.objects.filter(checkpoint=care)
    assert care_rows.count() == 20 and all(r.raw_output for r in care_rows)
    statuses = set(care_rows.values_list("parse_status", flat=True))
    assert "complete" not in statuses and "malformed" in statuses
    # a chain with a missing or misplaced node still has a clean reply; a malformed one has none
    unusable = care_rows.filter(usable=False)
    assert unusable.exists()
    assert set(unusable.values_list("parse_status", flat=True)) == {"malformed"}
    assert not unusable.exclude(text="").exists()
    usable_contexts = set(care_rows.filter(usable=True).values_list("context_id", flat=True))
    item_contexts = set(
        ComparisonItem.objects.filter(study=study).values_list("context_id", flat=True)
    )
    assert item_contexts == usable_contexts
    assert studies.study_overview(study)["unusable_responses"] == unusable.count()


def test_permanent_failure_is_recorded_and_can_be_retried():
    study, care, *_ = _study(2, care_config={"fail_every": 1, "fail_permanently": True})
    studies.open_study(study)
    failed = GenerationBatch.objects.filter(checkpoint=care, status="failed")
    assert failed.count() == 1 and "BackendError" in failed.get().error
    progress = generation.generation_progress(study)
    assert progress["failed"] and progress["failed"][0]["error"]
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN  # nothing left running; failures shown
    # a retry runs the batch again (this backend fails every time, so it fails again)
    batch_id = failed.get().pk
    assert generation.retry_batches([batch_id]) == [batch_id]
    batch = GenerationBatch.objects.get(pk=batch_id)
    assert (batch.status, batch.attempts) == ("failed", 2)


def test_a_study_whose_last_batch_fails_still_opens():
    study, care, esconv, _ = _study(2, care_config={"fail_every": 1, "fail_permanently": True})
    generation.queue_study(study)  # eager: every batch has run; make the failing one run last
    failing = GenerationBatch.objects.get(checkpoint=care)
    GenerationBatch.objects.filter(pk=failing.pk).update(status="pending")
    Study.objects.filter(pk=study.pk).update(status=Study.Status.GENERATING)
    generate_batch.delay(failing.pk)
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN
    assert GenerationBatch.objects.get(pk=failing.pk).status == "failed"


def test_reconcile_requeues_lost_and_orphaned_batches():
    study, *_ = _study(2)
    with transaction.atomic():
        # queue without the message (as if the broker lost it): enqueue is patched out
        batch = GenerationBatch.objects.create(
            study=study,
            checkpoint=study.comparisons.get().checkpoint_a,
            sampling_key="x",
            context_ids=[],
        )
    orphan = GenerationBatch.objects.create(
        study=study,
        checkpoint=batch.checkpoint,
        sampling_key="x",
        context_ids=[],
        status="running",
        worker="generation@host",
    )
    requeued = generation.reconcile(worker="generation@host")
    assert set(requeued) == {batch.pk, orphan.pk}
    assert set(GenerationBatch.objects.values_list("status", flat=True)) == {"done"}


def test_reconcile_opens_a_study_whose_last_worker_died_before_opening_it():
    """Every batch done, the responses stored, but the worker died before building the items
    and opening the study: reconcile (run when a worker starts) finishes the job."""
    study, *_ = _study(3)
    studies.open_study(study)
    ComparisonItem.objects.all().delete()
    Study.objects.filter(pk=study.pk).update(status=Study.Status.GENERATING)
    # another study, generating with a batch still pending: reconcile leaves it as it is
    queued_elsewhere = _study(2, name="other")[0]
    generation.queue_study(queued_elsewhere)
    GenerationBatch.objects.filter(study=queued_elsewhere).update(status="pending")
    Study.objects.filter(pk=queued_elsewhere.pk).update(status=Study.Status.GENERATING)

    generation.reconcile(pending_grace=3600)
    study.refresh_from_db()
    assert study.status == Study.Status.OPEN and study.items.count() == 3
    queued_elsewhere.refresh_from_db()
    assert queued_elsewhere.status == Study.Status.GENERATING


def test_generated_responses_are_scored_without_generating_again():
    from django.test import Client

    from pairwise.services.scoring import score_study
    from tests.factories import researcher

    study, care, esconv, _ = _study(4)
    studies.open_study(study)
    n_responses = Response.objects.count()
    results = score_study(study, bertscore=False)
    assert Response.objects.count() == n_responses
    assert set(results) == {care.label, esconv.label}
    assert results[care.label]["ACC_Stra"] is not None  # CARE states a strategy
    assert results[esconv.label]["ACC_Stra"] is None  # a baseline does not
    assert 0 <= results[care.label]["B-1"] <= 100 and results[care.label]["n"] == 4
    care.refresh_from_db()
    assert care.metrics["auto"][study.name]["D-1"] == results[care.label]["D-1"]
    client = Client()
    client.force_login(researcher(study, username="score-res"))
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="metrics-table"' in page and "ACC_Stra" in page


def test_a_checkpoint_is_prompted_with_the_window_it_was_trained_on():
    from models.base import prompt_hash
    from training.datasets.types import Turn
    from training.prompts import to_messages

    study, care, esconv, contexts = _study(2, care_config={"prompt_window": 1})
    studies.open_study(study)
    for response in Response.objects.filter(checkpoint=care):
        last = [Turn.from_dict(t) for t in response.context.history[-1:]]
        assert response.provenance["prompt_hash"] == prompt_hash(to_messages(last, care=True))
    for response in Response.objects.filter(checkpoint=esconv):  # no window: the whole history
        turns = [Turn.from_dict(t) for t in response.context.history]
        assert response.provenance["prompt_hash"] == prompt_hash(to_messages(turns))


# --- Blind-study integrity: leaks, truncation, the reasoning budget ---------------------------


def test_a_chain_without_think_is_split_and_a_leak_is_never_shown(monkeypatch, settings):
    """Real small models drop <think> or leak tags: the reply shown never holds one."""
    from models.fake import FakeBackend

    outputs = {
        0: '<context>a</context><plan strategy="Question">b</plan> How are you?',
        1: "That sounds hard. &lt;/plan&gt;",
        2: "< Plan >b</plan> How are you?",
        3: "<think/>How are you?",
    }
    calls = iter(range(100))
    original = FakeBackend._text

    def scripted(self, request):
        return outputs[next(calls) % 4] if self.reasoning else original(self, request)

    monkeypatch.setattr(FakeBackend, "_text", scripted)
    settings.GENERATION_BATCH_SIZE = 4
    study, care, *_ = _study(4)
    studies.open_study(study)
    rows = {r.raw_output: r for r in Response.objects.filter(checkpoint=care)}
    unwrapped = rows[outputs[0]]
    assert (unwrapped.parse_status, unwrapped.text, unwrapped.strategy) == (
        Response.ParseStatus.UNWRAPPED,
        "How are you?",
        "Question",
    )
    assert unwrapped.usable and unwrapped.reasoning.startswith("<context>a</context>")
    for raw in (outputs[1], outputs[3]):
        leak = rows[raw]
        assert (leak.parse_status, leak.text, leak.usable) == ("tag_leak", "", False)
    assert rows[outputs[2]].parse_status == "unwrapped"
    shown = ComparisonItem.objects.filter(study=study).values_list("response_a__text", flat=True)
    assert set(shown) == {"How are you?"}


def test_a_nul_in_model_output_is_stored_as_a_replacement_character(monkeypatch, settings):
    """PostgreSQL text cannot hold NUL (a batch failed there on a tiny model's sample): generated
    and imported text alike store U+FFFD instead, on every database, and the batch completes."""
    from models.fake import FakeBackend
    from pairwise.services.generation import parsed_response

    chain = "<think><context>a\x00</context><cognition>b</cognition><emotion>c</emotion>"
    chain += '<plan strategy="Question">d</plan></think>\nHow\x00 are you?'
    original = FakeBackend._text

    def with_nul(self, request):
        return chain if self.reasoning else "Hi\x00 there, that sounds hard."

    monkeypatch.setattr(FakeBackend, "_text", with_nul)
    settings.GENERATION_BATCH_SIZE = 4
    study, care, esconv, _ = _study(2)
    studies.open_study(study)
    assert set(GenerationBatch.objects.filter(study=study).values_list("status", flat=True)) == {
        GenerationBatch.Status.DONE
    }
    for r in Response.objects.filter(checkpoint__in=[care, esconv]):
        assert "\x00" not in r.raw_output + r.text + r.reasoning
        assert "\ufffd" in r.raw_output and r.usable
    reply = Response.objects.filter(checkpoint=care).first()
    assert reply.parse_status == "complete" and reply.text == "How\ufffd are you?"
    monkeypatch.setattr(FakeBackend, "_text", original)
    imported = parsed_response(care, "k", None, "Hi\x00", provenance={}, reasoning="r\x00")
    assert (imported.text, imported.reasoning) == ("Hi\ufffd", "r\ufffd")


def test_imported_replies_with_a_tag_are_leaks_with_and_without_reasoning(tmp_path):
    import json

    from pairwise.services.responses import import_responses
    from tests.factories import make_study

    study, (care, _), contexts = make_study(n_contexts=4, with_responses=False)
    lines = [
        {"context_id": contexts[0].pk, "text": "<context>c</context>\nHow are you?"},
        {"context_id": contexts[1].pk, "text": "Hi &lt;think&gt;"},
        {"context_id": contexts[2].pk, "text": "Hi <PLAN>p</PLAN>", "reasoning": "<plan>p</plan>"},
        {"context_id": contexts[3].pk, "text": "How are you?", "reasoning": "<plan>p</plan>"},
    ]
    f = tmp_path / "care.jsonl"
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    result = import_responses(care, f, study=study)
    assert result["unusable"] == 2
    got = {
        r.context_id: (r.parse_status, r.text, r.usable)
        for r in Response.objects.filter(checkpoint=care)
    }
    assert got == {
        contexts[0].pk: ("unwrapped", "How are you?", True),
        contexts[1].pk: ("tag_leak", "", False),
        contexts[2].pk: ("tag_leak", "", False),  # the reply given as it is holds a tag
        contexts[3].pk: ("no_reasoning", "How are you?", True),
    }


def test_a_reply_cut_at_the_length_limit_is_marked_truncated_and_not_shown():
    # 8 tokens: every fake baseline reply (12+ words) is cut; CARE's chain has its own budget
    study, care, esconv, contexts = _study(3, sampling={"temperature": 0.7, "max_new_tokens": 8})
    studies.open_study(study)
    cut = Response.objects.filter(checkpoint=esconv)
    assert cut.count() == 3
    for r in cut:
        assert r.truncated and r.usable and r.parse_status == "no_reasoning"
        assert r.provenance["finish_reason"] == "length" and len(r.text.split()) == 8
    assert not Response.objects.filter(checkpoint=care, truncated=True).exists()
    assert ComparisonItem.objects.filter(study=study).count() == 0  # not shown by default
    study.allow_truncated = True
    study.save()
    assert build_items(study) == 3


def test_truncated_replies_are_left_out_of_items_unless_the_study_allows_them():
    from pairwise.services.sampling import sampling_key
    from tests.factories import make_study

    study, checkpoints, contexts = make_study(n_contexts=4, with_responses=False)
    key = sampling_key(study.sampling)
    for ck in checkpoints:
        for i, ctx in enumerate(contexts):
            Response.objects.create(
                checkpoint=ck,
                context=ctx,
                sampling_key=key,
                text=f"reply {ck.pk}-{ctx.pk}",
                parse_status=Response.ParseStatus.NO_REASONING,
                truncated=(ck == checkpoints[0] and i < 3),
            )
    assert build_items(study) == 1
    study.allow_truncated = True
    study.save()
    assert build_items(study) == 3
    assert study.items.count() == 4


def test_default_sampling_keeps_its_key():
    """Responses are stored under these keys: a new sampling field must not change them."""
    from models.base import SamplingParams
    from pairwise.services.sampling import sampling_key

    assert SamplingParams().key() == "61cdf7560f3dff90"  # computed before reasoning_tokens
    assert sampling_key(None) == sampling_key({"reasoning_tokens": 0}) == "61cdf7560f3dff90"
    demo = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 160}
    assert sampling_key(demo) == "44cc0d7a0311b6fe"
    assert SamplingParams().to_dict() == {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 128}
    assert sampling_key({**demo, "reasoning_tokens": 64}) != sampling_key(demo)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "64"])
def test_reasoning_tokens_is_validated_and_named(bad):
    from pairwise.services.sampling import sampling_params

    with pytest.raises(ValueError, match="reasoning_tokens"):
        sampling_params({"reasoning_tokens": bad})


def test_an_unknown_sampling_field_lists_the_allowed_ones():
    from pairwise.services.sampling import sampling_params

    with pytest.raises(ValueError, match="reasoning_tokens"):
        sampling_params({"max_tokens": 3})


def test_a_reasoning_checkpoint_gets_a_chain_budget_on_top_of_the_reply():
    from pairwise.services.sampling import DEFAULT_REASONING_TOKENS

    # 8 reply tokens: before the budget, every fake CARE chain (34+ words) was cut off
    study, care, esconv, _ = _study(2, sampling={"max_new_tokens": 8})
    studies.open_study(study)
    for r in Response.objects.filter(checkpoint=care):
        assert r.parse_status == "complete" and r.usable and not r.truncated
        assert (
            r.provenance["reply_tokens"],
            r.provenance["reasoning_tokens"],
            r.provenance["max_new_tokens"],
        ) == (8, DEFAULT_REASONING_TOKENS, 8 + DEFAULT_REASONING_TOKENS)
    for r in Response.objects.filter(checkpoint=esconv):
        p = r.provenance
        assert (p["reply_tokens"], p["reasoning_tokens"], p["max_new_tokens"]) == (8, 0, 8)
    # a study's own budget
    study, care, *_ = _study(1, name="own", sampling={"max_new_tokens": 8, "reasoning_tokens": 40})
    studies.open_study(study)
    r = Response.objects.get(checkpoint=care, context__studies=study)
    p = r.provenance
    assert (p["reply_tokens"], p["reasoning_tokens"], p["max_new_tokens"]) == (8, 40, 48)
    assert p["sampling"] == {
        "temperature": 0.7,
        "top_p": 0.9,
        "max_new_tokens": 8,
        "reasoning_tokens": 40,
    }
