"""The researcher's loop on tiny models with a real worker (issue: retrain -> register -> re-queue).

train -> register -> open a study -> generate (vLLM, real worker) -> items -> simulated judgments
-> retrain -> register -> re-queue; then: only new work happened, no judgment was lost, and the
statistics tell the two versions apart.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.integration.conftest import site_app_on, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RECIPES = Path(__file__).resolve().parents[2] / "training" / "recipes"
VLLM_ENV = {"VLLM_ENABLE_V1_MULTIPROCESSING": "0", "VLLM_CPU_KVCACHE_SPACE": "1"}


def _sft(recipe: str, base: Path, out: Path, *extra: str) -> Path:
    from training import sft

    sft.main(
        [
            "--config",
            str(RECIPES / recipe),
            "--model_name_or_path",
            str(base),
            "--output_dir",
            str(out),
            "--max_steps",
            "2",
            "--report_to",
            "none",
            "--save_strategy",
            "no",
            *extra,
        ]
    )
    return out


def _judgments() -> set[tuple]:
    from pairwise.models import Judgment

    return {
        (pk, item, json.dumps(c, sort_keys=True))
        for pk, item, c in Judgment.objects.values_list("pk", "item_id", "choices")
    }


def _usable_pairs(study, a, b) -> set[int]:
    """Contexts where both replies may be shown in the study: those that get an item."""
    from pairwise.services.eligibility import eligible_by_context
    from pairwise.services.sampling import sampling_key

    key, contexts = sampling_key(study.sampling), list(study.contexts.values_list("pk", flat=True))
    return set(eligible_by_context(study, a.pk, key, contexts)) & set(
        eligible_by_context(study, b.pk, key, contexts)
    )


def _wait_generated(study, timeout=420):
    from pairwise.models import GenerationBatch, Study

    def done():
        # the worker marks its batch done, then builds the items, then opens the study: wait
        # for the last step, not the first (polling between them saw "generating")
        active = GenerationBatch.objects.filter(study=study, status__in=["pending", "running"])
        generating = Study.objects.filter(pk=study.pk, status="generating").exists()
        return not active.exists() and not generating

    wait_for(done, timeout, interval=0.5, what="generation batches to finish")
    failed = GenerationBatch.objects.filter(study=study, status="failed")
    assert not failed.exists(), list(failed.values_list("error", flat=True))


def test_retrain_register_requeue(tmp_path, tiny_model_dir, embedded_broker, workers):
    from pairwise.models import ComparisonItem, GenerationBatch, Judgment, Response
    from pairwise.services import export, studies
    from pairwise.services.checkpoints import register_checkpoint
    from pairwise.services.simulate import simulate
    from tests.factories import EvalContextFactory

    # 1-2. train a candidate system (v1) and the ESConv baseline, register them. Plain-reply SFT
    # and greedy decoding keep the replies parseable: a 2-step CARE model mostly writes an
    # unclosed chain, whose responses are (rightly) left out of the items.
    cand1 = _sft(
        "baseline_esconv_tiny.yaml",
        tiny_model_dir,
        tmp_path / "cand-v1",
        "--limit",
        "16",
        "--system_name",
        "Candidate",
    )
    base = _sft(
        "baseline_esconv_tiny.yaml",
        tiny_model_dir,
        tmp_path / "esconv",
        "--limit",
        "16",
        "--seed",
        "1",
    )
    v1 = register_checkpoint(cand1)
    baseline = register_checkpoint(base, system="ESConv")
    assert v1.system.name == "Candidate" and v1.lineage["system"] == "Candidate"

    with site_app_on(embedded_broker.url):
        workers.start("gen", embedded_broker.url, env=VLLM_ENV)
        # 3-5. open a study; the worker generates; items appear
        contexts = [EvalContextFactory() for _ in range(4)]
        study = studies.create_study(
            "loop",
            contexts=contexts,
            pairs=[(v1, baseline)],
            overlap_k=2,
            sampling={"temperature": 1.0, "top_p": 1.0, "max_new_tokens": 16},
            allow_truncated=True,  # 16 tokens of a random tiny model: most replies are cut off
        )
        studies.open_study(study)
        _wait_generated(study)
        study.refresh_from_db()
        assert study.status == "open"
        assert Response.objects.filter(provenance__backend="vllm").count() == 8
        # an item per context where both replies are usable (a tiny model may stop at once)
        first_items = _usable_pairs(study, v1, baseline)
        assert first_items, "no usable pair of replies: the test cannot go on"
        assert ComparisonItem.objects.filter(study=study).count() == len(first_items)

        # 6. simulated annotators judge: v1 wins
        made = simulate(study, annotators=2, preference=1.0, tie_rate=0.0, agreement=1.0)
        assert made == 2 * len(first_items)
        judgments_before = _judgments()
        responses_before = set(Response.objects.values_list("pk", "text"))
        batches_before = set(GenerationBatch.objects.values_list("pk", flat=True))

        # 7-9. retrain from v1, register v2 (its parent is v1), re-queue the latest Candidate
        cand2 = _sft(
            "baseline_esconv_tiny.yaml",
            cand1,
            tmp_path / "cand-v2",
            "--limit",
            "32",
            "--system_name",
            "Candidate",
        )
        v2 = register_checkpoint(cand2)
        assert (v2.version, v2.parent_id) == (2, v1.pk)
        result = studies.requeue(study, studies.latest_checkpoint("Candidate"))
        assert result["comparisons_added"] == 1 and result["batches"] == 1
        _wait_generated(study)

    # only new work: the three responses of v2, one new batch, three new items
    new_batches = GenerationBatch.objects.exclude(pk__in=batches_before)
    assert list(new_batches.values_list("checkpoint_id", flat=True)) == [v2.pk]
    assert set(Response.objects.values_list("pk", "text")) - responses_before == set(
        Response.objects.filter(checkpoint=v2).values_list("pk", "text")
    )
    assert Response.objects.filter(checkpoint=v2).count() == 4
    second_items = _usable_pairs(study, v2, baseline)
    assert second_items, "v2 wrote no usable reply: nothing to judge"
    assert ComparisonItem.objects.filter(study=study).count() == len(first_items) + len(
        second_items
    )
    # no judgment lost or changed, and each stays tied to the checkpoint it judged
    assert judgments_before <= _judgments()
    assert not Judgment.objects.filter(item__response_a__checkpoint=v2).exists()

    # the new version is judged (it loses), and the statistics separate the versions
    simulate(study, annotators=2, preference=0.0, tie_rate=0.0, agreement=1.0, seed=1)
    summary = export.study_summary(study, n_boot=50)
    overall = {
        r["comparison"]: r["win_rate"]
        for r in summary["preference"]
        if r["criterion"] == "Overall" and r["denominator"] == "all"
    }
    assert overall == {"Candidate v1 vs ESConv v1": 1.0, "Candidate v2 vs ESConv v1": 0.0}
    only_v2 = export.study_summary(study, checkpoint=str(v2.pk), n_boot=50)
    assert {r["comparison"] for r in only_v2["preference"]} == {"Candidate v2 vs ESConv v1"}

    # re-queuing again does nothing
    assert studies.requeue(study, v2) == {"comparisons_added": 0, "batches": 0, "items": 0}
