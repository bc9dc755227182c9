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
    A teacher model behind a ``models`` backend writes the chain from the versioned prompt in
    ``training/templates/<template>.txt``. The model name depends on the endpoint: the DeepSeek
    API calls R1 ``deepseek-reasoner`` (the default), a local vLLM server its hub id
    ``deepseek-ai/DeepSeek-R1``; a hub id sent to the DeepSeek API is refused before any
    request. An output that stopped at the length limit (``finish_reason`` "length") is
    rejected as ``truncated``; a chain that misses a node, is out of order, or whose plan names
    another strategy is rejected too. Rejected examples are regenerated (new seed) up to
    ``max_retries`` times, then dropped.

Files beside ``out``:

``<out>.stats.json``    counts summed over every run (``generated``, ``retried``, ``dropped``,
                        ``rejections`` by reason, ``corrupt_lines``) and one entry per run
                        (``runs``: its config, counts and times)
``<out>.dropped.jsonl`` one line per dropped example (id, rejection reasons, attempts, teacher,
                        template, seed); a resume skips them unless ``--retry_dropped``
``<out>.corrupt``       lines of ``out`` that were not a record (a crash mid-write, an edit),
                        moved here on resume with their line number, so they are not lost

Resume: on start, every valid record of ``out`` is kept and its id skipped; a line that is not
a record, anywhere in the file, is moved to ``<out>.corrupt`` and reported, and the lines after
it are kept. A resume whose template, teacher or seed differ from those of the records already
in ``out`` stops with an error naming them, unless ``--force`` is given. Each line is flushed
as soon as it is written.
"""

from __future__ import annotations

import json
import logging
import os
import random
import re
import string
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
    teacher_model: str = field(
        default="deepseek-reasoner",
        metadata={
            "help": "the endpoint's model name: deepseek-reasoner on the DeepSeek API, the hub "
            "id (deepseek-ai/DeepSeek-R1) on a local vLLM server"
        },
    )
    backend_settings: str = field(
        default="{}",
        metadata={"help": "JSON object (or YAML mapping) of extra backend settings"},
    )
    api_key_env: str | None = field(
        default=None,
        metadata={"help": "environment variable holding the API key (never put it in a recipe)"},
    )
    temperature: float = 0.6
    top_p: float = 0.95
    max_new_tokens: int = 2048
    max_retries: int = 3
    batch_size: int = 16
    # Resume
    force: bool = field(
        default=False,
        metadata={"help": "resume even if template, teacher or seed differ from out's records"},
    )
    retry_dropped: bool = field(
        default=False, metadata={"help": "retry the examples earlier runs dropped"}
    )

    def __post_init__(self) -> None:
        if self.mode not in ("offline", "teacher"):
            raise ValueError(f"mode={self.mode!r}: expected 'offline' or 'teacher'")
        if self.max_retries < 0 or self.batch_size < 1:
            raise ValueError("max_retries must be >= 0 and batch_size >= 1")
        if self.mode == "teacher":
            check_teacher_endpoint(self.teacher_model, self.settings().get("base_url"))

    def provenance(self) -> dict[str, Any]:
        """What every record of this run says made it (``attempts`` is added per record)."""
        if self.mode == "offline":
            return {"teacher": "offline", "template": OFFLINE_TEMPLATE, "seed": self.seed}
        return {"teacher": self.teacher_model, "template": self.template, "seed": self.seed}

    def backend_options(self) -> dict[str, Any]:
        """Settings for ``get_backend``: the model, ``backend_settings`` and the API key."""
        options = {"model": self.teacher_model, **self.settings()}
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ValueError(f"api_key_env: ${self.api_key_env} is not set")
            options.setdefault("api_key", key)
        return options

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


#: Model names the DeepSeek API accepts; it does not know hub ids such as deepseek-ai/DeepSeek-R1.
DEEPSEEK_API_MODELS = ("deepseek-reasoner", "deepseek-chat")


def check_teacher_endpoint(model: str, base_url: str | None) -> None:
    """Refuse a model name the endpoint cannot know: a hub id sent to the DeepSeek API.

    >>> check_teacher_endpoint("deepseek-reasoner", "https://api.deepseek.com/v1")
    >>> check_teacher_endpoint("deepseek-ai/DeepSeek-R1", "http://localhost:8000/v1")
    >>> check_teacher_endpoint("deepseek-ai/DeepSeek-R1", "https://api.deepseek.com/v1")
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: teacher_model='deepseek-ai/DeepSeek-R1' is not a DeepSeek API model name ...
    """
    host = urlsplit(base_url or "").hostname or ""
    if (host == "deepseek.com" or host.endswith(".deepseek.com")) and model not in (
        DEEPSEEK_API_MODELS
    ):
        raise ValueError(
            f"teacher_model={model!r} is not a DeepSeek API model name (base_url {base_url}); "
            f"expected one of {', '.join(DEEPSEEK_API_MODELS)} (R1 is 'deepseek-reasoner'). "
            "Hub ids such as deepseek-ai/DeepSeek-R1 are for a local vLLM server."
        )


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


class ResumeError(ValueError):
    """Resuming ``out`` would mix records made differently (template, teacher or seed)."""


def _record_error(record: Any) -> str | None:
    """Why a parsed line is not an enrichment record, or None when it is one."""
    if not isinstance(record, dict):
        return f"a JSON {type(record).__name__}, not an object"
    for key, kind in (("id", str), ("target", str), ("history", list), ("provenance", dict)):
        if not isinstance(record.get(key), kind):
            return f"field {key!r} missing or not a {kind.__name__}"
    return None


@dataclass
class OutputScan:
    """What a resume finds in ``out``: the ids written, how they were made, and bad lines."""

    done: set[str] = field(default_factory=set)
    made_with: Counter = field(default_factory=Counter)  # (teacher, template, seed) -> records
    corrupt: list[tuple[int, str]] = field(default_factory=list)  # (line number, reason)


def scan_output(out: Path) -> OutputScan:
    """Read ``out`` for a resume; keep every valid record, move every other line aside.

    A line that is not a record (cut short by a crash, invalid JSON, a wrong shape), wherever
    it is, goes to ``<out>.corrupt`` with its line number and reason, and ``out`` is rewritten
    (atomically) without it: the valid lines after it are kept, and appending starts on a
    fresh line.
    """
    scan = OutputScan()
    if not out.exists():
        return scan
    good: list[bytes] = []
    bad: list[dict[str, Any]] = []
    with out.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
                reason = _record_error(record)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                reason = f"not JSON ({exc.__class__.__name__}: {exc})"
                if not raw.endswith(b"\n"):
                    reason = "cut short (no end of line: a crash mid-write?)"
            if reason is not None:
                scan.corrupt.append((lineno, reason))
                text = raw.decode("utf-8", "replace").rstrip("\n")
                bad.append({"line": lineno, "reason": reason, "text": text})
                continue
            scan.done.add(record["id"])
            prov = record["provenance"]
            scan.made_with[(prov.get("teacher"), prov.get("template"), prov.get("seed"))] += 1
            good.append(raw if raw.endswith(b"\n") else raw + b"\n")
    if bad or (good and b"".join(good) != out.read_bytes()):
        if bad:
            with open(f"{out}.corrupt", "a", encoding="utf-8") as fh:
                for entry in bad:
                    fh.write(json.dumps(entry, ensure_ascii=False) + "\n")
            logger.warning(
                "%s: %d line(s) are not records, moved to %s.corrupt: %s",
                out,
                len(bad),
                out,
                "; ".join(f"line {n}: {why}" for n, why in scan.corrupt[:5]),
            )
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_bytes(b"".join(good))
        tmp.replace(out)
    return scan


def check_resume(cfg: EnrichConfig, out: Path, scan: OutputScan) -> None:
    """Stop (``ResumeError``) when ``out`` holds records made with another template, teacher or
    seed than ``cfg``'s, unless ``cfg.force``."""
    want = cfg.provenance()
    mine = (want["teacher"], want["template"], want["seed"])
    others = {k: n for k, n in scan.made_with.items() if k != mine}
    if not others or cfg.force:
        if others:
            logger.warning("%s: --force: adding %s records to %s", out, mine, dict(others))
        return
    found = "; ".join(
        f"{n} record(s) with teacher={t!r}, template={tp!r}, seed={sd!r}"
        for (t, tp, sd), n in sorted(others.items(), key=str)
    )
    raise ResumeError(
        f"{out}: this run would write teacher={mine[0]!r}, template={mine[1]!r}, "
        f"seed={mine[2]!r}, but the file holds {found}. Write to another --out, or pass "
        "--force true to mix them."
    )


def read_dropped(out: Path) -> dict[str, dict[str, Any]]:
    """The examples earlier runs dropped (``<out>.dropped.jsonl``), by id; bad lines skipped."""
    path = Path(f"{out}.dropped.jsonl")
    dropped: dict[str, dict[str, Any]] = {}
    if not path.exists():
        return dropped
    for lineno, line in enumerate(path.read_text("utf-8", errors="replace").splitlines(), 1):
        try:
            entry = json.loads(line)
            dropped[entry["id"]] = entry
        except (json.JSONDecodeError, KeyError, TypeError):
            if line.strip():
                logger.warning("%s:%d: not a dropped-example line, skipped", path, lineno)
    return dropped


def _read_stats(path: Path) -> dict[str, Any]:
    """The stats of earlier runs; a file from before ``runs`` existed counts as one run."""
    if not path.exists():
        return {"runs": []}
    try:
        stats = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        logger.warning("%s: unreadable (%s); counting from this run on", path, exc)
        return {"runs": []}
    if not isinstance(stats, dict):
        return {"runs": []}
    if "runs" not in stats:  # one run, written before the stats accumulated
        stats = {"runs": [{k: v for k, v in stats.items() if k not in ("out", "mode")}]}
    return stats


def _recorded_config(cfg: EnrichConfig) -> dict[str, Any]:
    """The config as written to the stats: an API key in ``backend_settings`` is masked."""
    config = asdict(cfg)
    settings = cfg.settings()
    if "api_key" in settings:
        config["backend_settings"] = {**settings, "api_key": "***"}
    return config


RUN_COUNTS = ("generated", "retried", "dropped", "corrupt_lines")


def _accumulate(path: Path, run: dict[str, Any], records: int, dropped_ids: int) -> dict:
    """Add this run to ``<out>.stats.json`` and return the whole file's content."""
    stats = _read_stats(path)
    runs = [*stats.get("runs", []), run]
    totals: dict[str, Any] = {k: sum(int(r.get(k) or 0) for r in runs) for k in RUN_COUNTS}
    rejections: Counter[str] = Counter()
    for r in runs:
        rejections.update(r.get("rejections") or {})
    merged = {
        "out": run["out"],
        "mode": run["mode"],
        **totals,
        "rejections": dict(rejections),
        "records": records,
        "dropped_pending": dropped_ids,
        "runs": runs,
    }
    path.write_text(json.dumps(merged, indent=2, default=str) + "\n", "utf-8")
    return merged


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
    """Write the enriched JSONL for ``cfg`` and return this run's counts (and the totals).

    ``backend`` (teacher mode) is any object with ``generate(list[GenerationRequest])``; by
    default ``models.registry.get_backend(cfg.backend, **cfg.backend_options())``.
    ``examples`` overrides the loaded turn examples (tests).
    """
    from tqdm.auto import tqdm

    started = time.time()
    out = Path(cfg.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    todo_all = list(examples) if examples is not None else load_examples(cfg)
    scan = scan_output(out)
    check_resume(cfg, out, scan)
    dropped_before = {k: v for k, v in read_dropped(out).items() if k not in scan.done}
    skip = scan.done if cfg.retry_dropped else scan.done | set(dropped_before)
    todo = [ex for ex in todo_all if example_id(ex) not in skip]
    counts: Counter[str] = Counter(
        skipped_done=sum(example_id(ex) in scan.done for ex in todo_all),
        corrupt_lines=len(scan.corrupt),
    )
    counts["skipped_dropped"] = len(todo_all) - len(todo) - counts["skipped_done"]
    reasons: Counter[str] = Counter()
    logger.info(
        "%s: %d examples, %d already written, %d dropped before (%s)",
        out,
        len(todo_all),
        counts["skipped_done"],
        len(dropped_before),
        "retrying them" if cfg.retry_dropped else "skipped; --retry_dropped retries them",
    )
    provenance = cfg.provenance()
    dropped_now: set[str] = set()

    with (
        out.open("a", encoding="utf-8") as fh,
        open(f"{out}.dropped.jsonl", "a", encoding="utf-8") as dropped_fh,
        tqdm(total=len(todo), desc="enrich") as bar,
    ):

        def write(example: Any, nodes: dict[str, str], attempts: int) -> None:
            record = make_record(example, nodes, {**provenance, "attempts": attempts})
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            fh.flush()
            counts["generated"] += 1

        def drop(example: Any, why: Counter[str], attempts: int) -> None:
            entry = {"id": example_id(example), "reasons": dict(why), "attempts": attempts}
            dropped_fh.write(json.dumps({**entry, **provenance}) + "\n")
            dropped_fh.flush()
            dropped_now.add(entry["id"])
            counts["dropped"] += 1
            logger.warning("%s: dropped after %d attempts (%s)", entry["id"], attempts, dict(why))

        if cfg.mode == "offline":
            for ex in todo:
                write(ex, offline_chain(ex, seed=cfg.seed), 1)
                bar.update(1)
        else:
            from models.base import GenerationRequest, SamplingParams

            if backend is None:
                from models.registry import get_backend

                backend = get_backend(cfg.backend, **cfg.backend_options())
            template, _ = load_template(cfg.template)
            sampling = SamplingParams(
                temperature=cfg.temperature, top_p=cfg.top_p, max_new_tokens=cfg.max_new_tokens
            )
            for start in range(0, len(todo), cfg.batch_size):
                pending = list(todo[start : start + cfg.batch_size])
                why: dict[str, Counter[str]] = {example_id(ex): Counter() for ex in pending}
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
                        if getattr(gen, "finish_reason", None) == "length":
                            nodes, reason = None, "truncated"  # stopped at max_new_tokens
                        else:
                            nodes, reason = check_teacher_chain(gen.text, ex.strategy)
                        if nodes is None:
                            reasons[reason] += 1
                            why[example_id(ex)][reason] += 1
                            failed.append(ex)
                            continue
                        write(ex, nodes, attempt + 1)
                        bar.update(1)
                    pending = failed
                    if not pending:
                        break
                    if attempt < cfg.max_retries:
                        counts["retried"] += len(pending)
                for ex in pending:
                    drop(ex, why[example_id(ex)], attempt + 1)
                bar.update(len(pending))

    still_dropped = (set(dropped_before) - scan.done - {example_id(ex) for ex in todo}) | (
        dropped_now
    )
    run = {
        "out": str(out),
        "mode": cfg.mode,
        "started_at": started,
        "seconds": round(time.time() - started, 3),
        "generated": counts["generated"],
        "retried": counts["retried"],
        "dropped": counts["dropped"],
        "skipped_done": counts["skipped_done"],
        "skipped_dropped": counts["skipped_dropped"],
        "corrupt_lines": counts["corrupt_lines"],
        "rejections": dict(reasons),
        "config": _recorded_config(cfg),
    }
    totals = _accumulate(
        Path(f"{out}.stats.json"),
        run,
        records=len(scan.done) + counts["generated"],
        dropped_ids=len(still_dropped),
    )
    logger.info(
        "%s: generated %d, retried %d, dropped %d, already done %d, skipped as dropped %d, "
        "corrupt lines %d; %d records in all",
        out,
        run["generated"],
        run["retried"],
        run["dropped"],
        run["skipped_done"],
        run["skipped_dropped"],
        run["corrupt_lines"],
        totals["records"],
    )
    return {**run, "totals": {k: totals[k] for k in (*RUN_COUNTS, "rejections", "records")}}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point (``--config recipe.yaml`` plus ``--flag value`` overrides)."""
    from trl import TrlParser

    logging.basicConfig(
        level=os.environ.get("LOGLEVEL", "INFO"), format="%(levelname)s %(message)s"
    )
    (cfg,) = TrlParser((EnrichConfig,)).parse_args_and_config(args=argv)
    stats = enrich(cfg)
    print(json.dumps({k: v for k, v in stats.items() if k != "config"}, default=str))
    return stats


if __name__ == "__main__":
    main()
