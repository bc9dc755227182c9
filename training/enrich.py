"""Enrich ESConv supporter turns with CARE reasoning chains (the SFT targets).

    python -m training.enrich --config training/recipes/enrich_offline.yaml
    python -m training.enrich --config training/recipes/enrich_teacher.yaml --limit 100

For every supporter turn of a split (``turn_examples``), a chain of the four nodes is built whose
plan names the gold strategy, and one JSON line is written per example::

    {"id": "esconv/train/17#5", "dialogue_id": "esconv/train/17", "turn_index": 5,
     "source": "esconv", "history": [{"speaker": ..., "text": ..., "strategy": ...}, ...],
     "strategy": "Question", "response": "<gold supporter text>",
     "chain": {"context": ..., "cognition": ..., "emotion": ..., "plan": ...},
     "target": "<think>...</think>\\n<gold supporter text>",
     "provenance": {"teacher": "offline" | "<teacher model>", "template": "offline_v2" |
                    "care_chain_v1", "seed": 0, "attempts": 1}}

Two modes:

``offline``
    Deterministic: the chain is written from the annotations (problem type, emotion type, gold
    strategy, the first 12 words of the seeker's last turn) with short templated sentences. The
    wording is drawn per example from a generator seeded by (seed, dialogue id, turn index), so a
    run is reproducible and different seeds give different wordings. Tests, the demo and users
    without a teacher use it.
``teacher``
    A teacher model (``deepseek-ai/DeepSeek-R1`` by default) behind a ``models`` backend writes
    the chain from the versioned prompt in ``training/templates/<template>.txt``. A chain that
    misses a node, is out of order, or whose plan names another strategy is regenerated (new
    seed) up to ``max_retries`` times, then dropped. The counts (generated, retried, dropped)
    are logged and written to ``<out>.stats.json``.

Resumable: on start, the ids already in ``out`` are skipped, and a last line cut short by a crash
is removed first. Each line is flushed as soon as it is written.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from training.care_format import (
    NODES,
    canonical_strategy,
    format_care_output,
    parse_care_output,
)

logger = logging.getLogger(__name__)

TEMPLATE_DIR = Path(__file__).resolve().parent / "templates"
OFFLINE_TEMPLATE = "offline_v2"


@dataclass
class EnrichConfig:
    """Options of ``python -m training.enrich`` (YAML keys and ``--flags`` alike)."""

    mode: str = field(default="offline", metadata={"help": "offline | teacher"})
    out: str = field(default="var/enriched/care_offline.jsonl", metadata={"help": "JSONL output"})
    dataset: str = field(default="esconv", metadata={"help": "corpus to enrich (esconv)"})
    split: str = field(default="train", metadata={"help": "train | valid | test"})
    data_dir: str | None = field(default=None, metadata={"help": "shared data folder"})
    limit: int | None = field(default=None, metadata={"help": "enrich only the first N examples"})
    window: int | None = field(default=None, metadata={"help": "history turns kept per example"})
    seed: int = field(default=0, metadata={"help": "wording (offline) / sampling (teacher) seed"})
    # Teacher mode
    template: str = field(default="care_chain_v1", metadata={"help": "training/templates/NAME.txt"})
    backend: str = field(default="http", metadata={"help": "models backend name"})
    teacher_model: str = field(default="deepseek-ai/DeepSeek-R1")
    backend_settings: str = field(
        default="{}",
        metadata={"help": "JSON object (or YAML mapping) of extra backend settings"},
    )
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 2048
    max_retries: int = 3
    batch_size: int = 16

    def __post_init__(self) -> None:
        if self.mode not in ("offline", "teacher"):
            raise ValueError(f"mode={self.mode!r}: expected 'offline' or 'teacher'")
        if self.max_retries < 0 or self.batch_size < 1:
            raise ValueError("max_retries must be >= 0 and batch_size >= 1")

    def settings(self) -> dict[str, Any]:
        """The backend settings as a dict (YAML gives a mapping, the command line a JSON string)."""
        value = self.backend_settings
        if isinstance(value, dict):
            return dict(value)
        try:
            parsed = json.loads(value or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"backend_settings: expected a JSON object, got {value!r}") from exc
        if not isinstance(parsed, dict):
            raise ValueError(f"backend_settings: expected a JSON object, got {value!r}")
        return parsed


# ---------------------------------------------------------------------------------------------
# Offline chains


# Short, regular sentences: a tiny model (about 1M parameters) learns to write the four tags
# reliably only when the chain is short; with the situation and a 30-word quote (~165 tokens)
# most of its samples were malformed (docs/training.md, "Measured at tiny scale").
_CONTEXT = (
    "The seeker is dealing with {problem}. They said: {last}",
    "The seeker talks about {problem}. They said: {last}",
    "This is about {problem}. They said: {last}",
)
_APPRAISAL = {
    "anxiety": "the situation around {problem} will turn out badly and is out of their control",
    "nervousness": "the situation around {problem} will turn out badly and is out of their control",
    "depression": "things will not get better and that their efforts with {problem} do not matter",
    "sadness": "{problem} has taken something from them that they cannot get back",
    "anger": "they have been treated unfairly in {problem}",
    "fear": "{problem} threatens their safety or their future",
    "shame": "{problem} shows that something is wrong with them",
    "guilt": "they are to blame for {problem}",
    "disgust": "what happened in {problem} is unacceptable",
    "jealousy": "others have what they lack in {problem}",
    "pain": "{problem} keeps hurting them and will not ease",
}
_COGNITION = ("They believe {appraisal}.", "They think {appraisal}.")
_EMOTION = ("They feel {emotion}.", "They are feeling {emotion}.")
_PLAN = {
    "Question": (
        "Ask an open question to learn more about {focus}.",
        "Invite them to say more, so I understand {focus} before responding further.",
    ),
    "Restatement or Paraphrasing": (
        "Restate what they said about {focus} so they know they were heard.",
        "Paraphrase their account of {focus} to check I understood it.",
    ),
    "Reflection of feelings": (
        "Name the {emotion} they are feeling so it is acknowledged.",
        "Reflect their {emotion} back to them, gently and without judging.",
    ),
    "Self-disclosure": (
        "Share a similar experience of my own so they feel less alone with {focus}.",
        "Briefly disclose that I have faced something like {focus} too.",
    ),
    "Affirmation and Reassurance": (
        "Affirm their strengths and reassure them that {focus} can get better.",
        "Reassure them that feeling {emotion} makes sense and that they are coping.",
    ),
    "Providing Suggestions": (
        "Offer a concrete, manageable suggestion for {focus}.",
        "Suggest a small next step they could take with {focus}.",
    ),
    "Information": (
        "Give useful information about {focus} that may help them.",
        "Share relevant facts about {focus} to put it in perspective.",
    ),
    "Others": (
        "Respond warmly to keep the conversation going and show I am here for them.",
        "Acknowledge their message in a friendly way and keep them talking.",
    ),
}
_PLAN_DEFAULT = ("Use the strategy {strategy} to support them with {focus}.",)


def _sentence(text: str | None, max_words: int = 40) -> str:
    words = (text or "").split()
    if not words:
        return ""
    clipped = " ".join(words[:max_words]) + (" ..." if len(words) > max_words else "")
    return clipped if clipped[-1] in ".!?\"'…" else clipped + "."


def _last_seeker_text(history: Sequence[Any]) -> str | None:
    for turn in reversed(history):
        if getattr(turn, "speaker", None) == "seeker" and turn.text.strip():
            return turn.text
    return None


def offline_chain(example: Any, *, seed: int = 0) -> dict[str, str]:
    """The four CARE nodes for a ``TurnExample``, built from its annotations with templates.

    Deterministic for a given (seed, dialogue id, turn index); the plan names the gold strategy.
    """
    if not example.strategy:
        raise ValueError(f"{example.dialogue_id}#{example.turn_index}: no gold strategy")
    strategy = canonical_strategy(example.strategy) or example.strategy
    rng = random.Random(f"{seed}:{example.dialogue_id}:{example.turn_index}")
    problem = (example.problem_type or "a difficult situation").strip().lower()
    emotion = (example.emotion_type or "distress").strip().lower()
    last = _last_seeker_text(example.history)
    context = rng.choice(_CONTEXT).format(
        problem=problem,
        last=f'"{_sentence(last, 12)}"' if last else "nothing yet; the supporter speaks first.",
    )
    appraisal = _APPRAISAL.get(emotion, "{problem} is more than they can handle alone")
    cognition = rng.choice(_COGNITION).format(appraisal=appraisal.format(problem=problem))
    emotion_node = rng.choice(_EMOTION).format(emotion=emotion, problem=problem)
    plan = rng.choice(_PLAN.get(strategy, _PLAN_DEFAULT)).format(
        focus=problem, emotion=emotion, strategy=strategy
    )
    return {
        "context": " ".join(context.split()),
        "cognition": cognition,
        "emotion": emotion_node,
        "plan": plan,
    }


# ---------------------------------------------------------------------------------------------
# Teacher chains


def load_template(name: str) -> tuple[string.Template, str]:
    """The teacher prompt ``training/templates/<name>.txt`` and its version (the file name)."""
    path = TEMPLATE_DIR / f"{name}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"template {name!r}: {path} does not exist")
    return string.Template(path.read_text("utf-8")), name


def _history_text(history: Sequence[Any]) -> str:
    lines = [f"{'Seeker' if t.speaker == 'seeker' else 'Supporter'}: {t.text}" for t in history]
    return "\n".join(lines) or "(the supporter speaks first)"


def teacher_prompt(template: string.Template, example: Any) -> str:
    """Fill the teacher template for one example (``$name`` placeholders)."""
    return template.safe_substitute(
        strategy=canonical_strategy(example.strategy) or example.strategy,
        problem_type=example.problem_type or "unknown",
        emotion_type=example.emotion_type or "unknown",
        situation=example.situation or "unknown",
        history=_history_text(example.history),
        response=example.target,
    )


_R1_THINK_END = re.compile(r"<\s*/\s*think\s*>", re.IGNORECASE)


def check_teacher_chain(text: str, gold_strategy: str) -> tuple[dict[str, str] | None, str]:
    """Validate a teacher's chain: (nodes, "ok") or (None, reason).

    A reasoning model's own ``<think>...</think>`` (DeepSeek-R1) is dropped first: the chain is
    what follows it. The chain must hold the four nodes once each, in order, with the plan's
    strategy equal to the gold one after normalisation.
    """
    chain = _R1_THINK_END.split(text or "")[-1].strip()
    parsed = parse_care_output(f"<think>{chain}</think>\n.")
    if parsed.status != "complete":
        return None, parsed.status
    want = canonical_strategy(gold_strategy)
    if parsed.strategy is None or want is None or parsed.strategy.casefold() != want.casefold():
        return None, "wrong_strategy"
    return {n: parsed.nodes[n] for n in NODES}, "ok"


# ---------------------------------------------------------------------------------------------
# Output, resume


def example_id(example: Any) -> str:
    """The stable id of a turn example: ``<dialogue_id>#<turn_index>``."""
    return f"{example.dialogue_id}#{example.turn_index}"


def _done_ids(out: Path) -> set[str]:
    """Ids already written to ``out``; a trailing partial line (a crash mid-write) is cut off."""
    if not out.exists():
        return set()
    done: set[str] = set()
    good_end = 0
    with out.open("rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break
            try:
                record = json.loads(raw)
                done.add(record["id"])
            except (json.JSONDecodeError, KeyError, TypeError, UnicodeDecodeError):
                break
            good_end += len(raw)
    if good_end != out.stat().st_size:
        logger.warning("%s: removing a partial record after byte %d (crash?)", out, good_end)
        with out.open("r+b") as fh:
            fh.truncate(good_end)
    return done


def make_record(example: Any, nodes: dict[str, str], provenance: dict[str, Any]) -> dict:
    """One output line: ids, history, gold strategy and text, the chain and the CARE target."""
    strategy = canonical_strategy(example.strategy) or example.strategy
    target = format_care_output(
        context=nodes["context"],
        cognition=nodes["cognition"],
        emotion=nodes["emotion"],
        strategy=strategy,
        plan=nodes["plan"],
        response=example.target,
    )
    return {
        "id": example_id(example),
        "dialogue_id": example.dialogue_id,
        "turn_index": example.turn_index,
        "source": example.source,
        "history": [t.to_dict() for t in example.history],
        "strategy": strategy,
        "response": example.target.strip(),
        "situation": example.situation,
        "emotion_type": example.emotion_type,
        "problem_type": example.problem_type,
        "chain": nodes,
        "target": target,
        "provenance": provenance,
    }


def load_examples(cfg: EnrichConfig) -> list[Any]:
    """The turn examples of ``cfg.dataset``/``cfg.split`` that have text and a gold strategy."""
    from training.datasets import load_dialogues, turn_examples

    dialogues = load_dialogues(cfg.dataset, cfg.split, data_dir=cfg.data_dir)
    examples = []
    for ex in turn_examples(dialogues, window=cfg.window):
        if ex.strategy and ex.target.strip():
            examples.append(ex)
            if cfg.limit is not None and len(examples) >= cfg.limit:
                break
    return examples


def enrich(
    cfg: EnrichConfig, *, backend: Any = None, examples: Iterable[Any] | None = None
) -> dict[str, Any]:
    """Write the enriched JSONL for ``cfg`` and return the counts.

    ``backend`` (teacher mode) is any object with ``generate(list[GenerationRequest])``; by
    default ``models.registry.get_backend(cfg.backend, **cfg.settings())``. ``examples``
    overrides the loaded turn examples (tests).
    """
    from tqdm.auto import tqdm

    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    todo_all = list(examples) if examples is not None else load_examples(cfg)
    done = _done_ids(out)
    todo = [ex for ex in todo_all if example_id(ex) not in done]
    counts: Counter[str] = Counter(skipped_done=len(todo_all) - len(todo))
    reasons: Counter[str] = Counter()
    logger.info("%s: %d examples, %d already written", out, len(todo_all), counts["skipped_done"])

    with out.open("a", encoding="utf-8") as fh, tqdm(total=len(todo), desc="enrich") as bar:

        def write(example: Any, nodes: dict[str, str], provenance: dict[str, Any]) -> None:
            fh.write(json.dumps(make_record(example, nodes, provenance), ensure_ascii=False))
            fh.write("\n")
            fh.flush()
            counts["generated"] += 1

        if cfg.mode == "offline":
            for ex in todo:
                prov = {"teacher": "offline", "template": OFFLINE_TEMPLATE, "seed": cfg.seed}
                write(ex, offline_chain(ex, seed=cfg.seed), {**prov, "attempts": 1})
                bar.update(1)
        else:
            from models.base import GenerationRequest, SamplingParams

            if backend is None:
                from models.registry import get_backend

                settings = {"model": cfg.teacher_model, **cfg.settings()}
                backend = get_backend(cfg.backend, **settings)
            template, version = load_template(cfg.template)
            sampling = SamplingParams(
                temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens
            )
            for start in range(0, len(todo), cfg.batch_size):
                pending = list(todo[start : start + cfg.batch_size])
                for attempt in range(cfg.max_retries + 1):
                    requests = [
                        GenerationRequest(
                            messages=[{"role": "user", "content": teacher_prompt(template, ex)}],
                            sampling=sampling,
                            seed=cfg.seed + 1_000_003 * attempt + ex.turn_index,
                        )
                        for ex in pending
                    ]
                    generations = backend.generate(requests)
                    failed = []
                    for ex, gen in zip(pending, generations, strict=True):
                        nodes, reason = check_teacher_chain(gen.text, ex.strategy)
                        if nodes is None:
                            reasons[reason] += 1
                            failed.append(ex)
                            continue
                        prov = {
                            "teacher": cfg.teacher_model,
                            "template": version,
                            "seed": cfg.seed,
                            "attempts": attempt + 1,
                        }
                        write(ex, nodes, prov)
                        bar.update(1)
                    pending = failed
                    if not pending:
                        break
                    if attempt < cfg.max_retries:
                        counts["retried"] += len(pending)
                for ex in pending:
                    logger.warning("%s: dropped after %d attempts", example_id(ex), attempt + 1)
                counts["dropped"] += len(pending)
                bar.update(len(pending))

    stats = {
        "out": str(out),
        "mode": cfg.mode,
        "generated": counts["generated"],
        "retried": counts["retried"],
        "dropped": counts["dropped"],
        "skipped_done": counts["skipped_done"],
        "rejections": dict(reasons),
        "config": asdict(cfg),
    }
    Path(f"{out}.stats.json").write_text(json.dumps(stats, indent=2, default=str) + "\n")
    logger.info(
        "%s: generated %d, retried %d, dropped %d, already done %d",
        out,
        stats["generated"],
        stats["retried"],
        stats["dropped"],
        stats["skipped_done"],
    )
    return stats


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point (``--config recipe.yaml`` plus ``--flag value`` overrides)."""
    from trl import TrlParser

    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO"), format="%(levelname)s %(message)s"
    )
    (cfg,) = TrlParser((EnrichConfig,)).parse_args_and_config(args=argv)
    stats = enrich(cfg)
    print(json.dumps({k: v for k, v in stats.items() if k != "config"}))
    return stats


if __name__ == "__main__":
    main()
