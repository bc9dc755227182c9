"""The evaluation datasheet of a study (issue 18 section 2), after the Human Evaluation
Datasheet 3.0 (HEDS 3.0, Belz & Thomson 2025, after Shimorina & Belz): systems, sample,
evaluators, design, criteria, quality control, results and ethics, filled from the study itself.

`build_datasheet` gathers (ORM) and returns one JSON-serialisable dict; `render_markdown` and
`render_latex` are pure renderers of that dict; `write_datasheet` writes the three files every
export carries. A field the platform cannot know (ethics approval, a preregistration link, a
checkpoint registered without lineage, a criterion without a definition) holds the string
`TO_BE_COMPLETED`; `incomplete_fields` lists their paths. docs/statistics.md ("The evaluation
datasheet") maps each field to its HEDS question.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from pairwise.models import (
    DEFAULT_DEFINITIONS,
    Checkpoint,
    Criterion,
    Judgment,
    Study,
    StudyMember,
)
from pairwise.services import evaluators, intra
from pairwise.services.stats.tables import _tex

TO_BE_COMPLETED = "to be completed"
SECTIONS = (
    "systems",
    "sample",
    "evaluators",
    "design",
    "criteria",
    "quality_control",
    "results",
    "ethics",
)
FILES = ("datasheet.json", "datasheet.md", "datasheet.tex")
# the 3-point relative scale, as the annotation form offers it (annotate.html)
SCALE = {
    "type": "3-point relative (pairwise) scale, one answer per criterion",
    "values": [
        {"value": "left", "label": "A is better"},
        {"value": "tie", "label": "Tie"},
        {"value": "right", "label": "B is better"},
    ],
    "outside_scale": "cannot judge (the whole item, with a free-text reason)",
}
# what the annotation page does (templates/pairwise/annotate.html, guidelines.html, annotate.js)
INTERFACE = {
    "layout": "side by side: the conversation so far, then reply A and reply B (A = left), "
    "the study's public title only, no system names",
    "response_form": "per criterion its verbatim definition and three radio buttons (A is better "
    "/ Tie / B is better), all required; keyboard shortcuts 1/2/3, arrows, Enter",
    "cannot_judge": "a 'Cannot judge this item' box with a free-text reason, for the whole item",
    "comment": "an optional free-text comment per item",
    "guidelines": "a guidelines page (the study's guidelines, its criteria and how to judge) "
    "shown before judging and linked from every item",
    "progress": "item n of N with a progress bar",
    "time_limit": "an item is leased for the study's lease time, then returns to the pool",
}
ORDER_RULE = (
    "serving order: fewest judgments first, ties broken by a random order key drawn from the "
    "study seed; the next item's side evens each annotator's A-left / A-right count"
)
SIDES_RULE = (
    "A's side drawn per item from the study seed, balanced within each comparison "
    "(|A left - A right| <= 1)"
)
SELECTION_RULE = (
    "n turn examples drawn without replacement by random.Random(seed), at most one per "
    "dialogue while dialogues last (pairwise/services/contexts.py, sample_examples)"
)
AGREEMENT_KEYS = ("criterion", "n_items", "fleiss_kappa", "fleiss_ci_low", "fleiss_ci_high")
AGREEMENT_KEYS += ("krippendorff_alpha", "percent_agreement")


# --- gathering (ORM) -----------------------------------------------------------------------


def build_datasheet(study: Study, summary: dict | None = None) -> dict:
    """The study's datasheet as a JSON-serialisable dict with the keys of `SECTIONS` plus
    `study`. `summary` is `export.study_summary(study)` (computed when not given); pass the
    unfiltered summary, since the datasheet describes the whole study."""
    if summary is None:
        from pairwise.services.export import study_summary

        summary = study_summary(study)
    return {
        "heds_version": "3.0",
        "study": {
            "id": study.pk,
            "name": study.name,
            "status": study.status,
            "created_at": study.created_at.isoformat() if study.created_at else None,
        },
        "systems": _systems(study),
        "sample": _sample(study, summary),
        "evaluators": _evaluators(study),
        "design": _design(study),
        "criteria": _criteria(study),
        "quality_control": _quality_control(study, summary),
        "results": _results(study, summary),
        "ethics": {
            "approval": TO_BE_COMPLETED,
            "preregistration": TO_BE_COMPLETED,
        },
    }


def _lineage(ck: Checkpoint) -> dict | str:
    """What `lineage.json` says about the checkpoint, trimmed to what a reader needs."""
    lin = ck.lineage or {}
    if not lin:
        return TO_BE_COMPLETED
    config = lin.get("config") or {}
    data = lin.get("data") or {}
    parent = lin.get("parent") or {}
    return {
        "system": lin.get("system", ck.system.name),
        "base_model": config.get("model_name_or_path") or parent.get("path"),
        "parent": ck.parent.label if ck.parent_id else parent.get("path"),
        "parent_lineage_sha256": parent.get("lineage_sha256"),
        "recipe": {
            k: config[k]
            for k in ("dataset_name", "learning_rate", "max_steps", "num_train_epochs", "seed")
            if k in config
        },
        "data_examples_sha256": data.get("examples_sha256"),
        "data_files": data.get("files"),
        "generation": lin.get("generation"),
        "git_commit": lin.get("git_commit"),
        "created_at": lin.get("created_at"),
        "lineage_sha256": lin.get("sha256"),
    }


def _systems(study: Study) -> list[dict]:
    """Each checkpoint of the study once, with its role (A: system of interest) and lineage."""
    checkpoints: dict[int, Checkpoint] = {}
    roles: dict[int, set[str]] = {}
    for c in study.comparisons.select_related(
        "checkpoint_a__system", "checkpoint_b__system", "checkpoint_a__parent__system"
    ):
        for role, ck in (("A", c.checkpoint_a), ("B", c.checkpoint_b)):
            checkpoints.setdefault(ck.pk, ck)
            roles.setdefault(ck.pk, set()).add(role)
    return [
        {
            "label": ck.label,
            "system": ck.system.name,
            "kind": ck.system.kind,
            "description": ck.system.description,
            "checkpoint_id": ck.pk,
            "role": "/".join(sorted(roles[pk])),
            "backend": ck.backend,
            "reasoning": ck.reasoning,
            "ancestors": _ancestors(ck),
            "lineage": _lineage(ck),
        }
        for pk, ck in checkpoints.items()
    ]


def _ancestors(ck: Checkpoint) -> list[str]:
    chain, seen, node = [], {ck.pk}, ck.parent
    while node is not None and node.pk not in seen:
        chain.append(node.label)
        seen.add(node.pk)
        node = node.parent
    return chain


def _selection(study: Study) -> dict | str:
    """How the contexts were chosen: `metadata["selection"]` written by `import_contexts`, or
    its audit row (dataset/split, n, seed) for contexts imported before it wrote one."""
    from auditlog.models import LogEntry

    sources = Counter()
    selections = []
    for source, meta in study.contexts.values_list("source", "metadata"):
        meta = meta or {}
        split = meta.get("split")
        sources[f"{source}/{split}" if split else source] += 1
        if meta.get("selection"):
            selections.append(meta["selection"])
    if not sources:
        return TO_BE_COMPLETED
    if not selections:
        for name in sources:
            entry = (
                LogEntry.objects.filter(
                    additional_data__kind="contexts", additional_data__source=name
                )
                .order_by("-timestamp")
                .first()
            )
            if entry is not None:
                d = entry.additional_data
                selections.append({"source": name, "n": d.get("n"), "seed": d.get("seed")})
    if not selections:
        return TO_BE_COMPLETED
    unique = [
        json.loads(s) for s in dict.fromkeys(json.dumps(x, sort_keys=True) for x in selections)
    ]
    return {"sources": dict(sources), "rule": SELECTION_RULE, "draws": unique}


def _sample(study: Study, summary: dict) -> dict:
    items = study.items
    n_items = items.filter(is_gold=False).count()
    return {
        "n_contexts": study.contexts.count(),
        "n_comparisons": study.comparisons.count(),
        "n_items": n_items,
        "n_items_judged": summary.get("n_items", 0),
        "n_gold_items": items.filter(is_gold=True).count(),
        "n_judgments": Judgment.objects.filter(study=study).count(),
        "selection": _selection(study),
        "seed": study.seed,
        "seed_use": "sides, serving order and gold draws derive from it",
        "generation_sampling": study.sampling,
    }


def _evaluators(study: Study) -> dict:
    judgments = Judgment.objects.filter(study=study).order_by()
    enrolled = StudyMember.objects.filter(study=study, role=StudyMember.Role.ANNOTATOR).count()
    return {
        "n": judgments.values("annotator_id").distinct().count(),
        "n_enrolled": enrolled,
        "n_simulated": judgments.filter(simulated=True).values("annotator_id").distinct().count(),
        "profile_counts": evaluators.profile_counts(study),
    }


def _design(study: Study) -> dict:
    return {
        "overlap_k": study.overlap_k,
        "exposure": {
            "rule": study.exposure,
            "description": Study.ExposureRule(study.exposure).label,
        },
        "randomisation": {"sides": SIDES_RULE, "order": ORDER_RULE},
        "gold_share": study.gold_share,
        "gold_controls": "the study's own list"
        if study.gold_controls
        else "gold replies of unrelated contexts",
        "repeat_share": study.repeat_share,
        "lease_ttl_seconds": study.lease_ttl_seconds,
        "quota_per_annotator": study.quota_per_annotator
        if study.quota_per_annotator is not None
        else "no quota",
        "allow_truncated": study.allow_truncated,
        "guideline_sha256": study.guideline_sha256 or None,
        "interface": INTERFACE,
    }


def _criteria(study: Study) -> list[dict]:
    versions = {}
    for c in Criterion.objects.filter(study=study).order_by("name", "version"):
        versions.setdefault(c.name, {})[c.version] = c
    out = []
    for name in study.criteria:
        by_version = versions.get(name, {})
        current = study.criteria_versions.get(name) if study.criteria_versions else None
        row = by_version.get(current) or (by_version[max(by_version)] if by_version else None)
        definition = (row.definition if row else "") or DEFAULT_DEFINITIONS.get(name, "")
        out.append(
            {
                "name": name,
                "definition": definition or TO_BE_COMPLETED,
                "version": row.version if row else 1,
                "scale": SCALE,
            }
        )
    return out


def _quality_control(study: Study, summary: dict) -> dict:
    annotators = summary.get("annotators", [])
    meta = summary.get("meta", {})
    reasons = Counter(
        (r or "no reason given").strip()
        for r in Judgment.objects.filter(study=study, cannot_judge=True).values_list(
            "cannot_judge_reason", flat=True
        )
    )
    too_fast = [a["annotator"] for a in annotators if a.get("too_fast")]
    low_gold = [a["annotator"] for a in annotators if a.get("low_gold")]
    short = study.items.filter(is_gold=False, judgment_count__lt=study.overlap_k).count()
    exclusions = [
        {
            "what": "cannot_judge answers",
            "count": sum(reasons.values()),
            "reason": "annotator could not judge the item; left out of preference and agreement",
            "reasons": dict(reasons.most_common()),
        },
        {
            "what": "gold-item judgments",
            "count": summary.get("counts", {}).get("gold_judgments", 0),
            "reason": "attention checks, never in preference or agreement tables",
        },
        {
            "what": "simulated judgments",
            "count": summary.get("simulated_judgments", 0),
            "reason": "made by the simulator, not people; marked and reported apart",
        },
        {
            "what": "too-fast annotators (flagged, kept)",
            "count": len(too_fast),
            "reason": meta.get("too_fast_rule", ""),
            "annotators": too_fast,
        },
        {
            "what": "low-gold annotators (flagged, kept)",
            "count": len(low_gold),
            "reason": meta.get("low_gold_rule", ""),
            "annotators": low_gold,
        },
        {
            "what": "items short of k judgments",
            "count": short,
            "reason": f"fewer than k = {study.overlap_k} judgments; out of Fleiss' kappa",
        },
        {
            "what": "contexts without an item",
            "count": sum(
                a.get("n_contexts", 0) - a.get("with_item", 0)
                for a in summary.get("availability", [])
                if a.get("known", True)
            ),
            "reason": "a reply not eligible (missing, failed, truncated or revealing); "
            "counted back in the intention-to-treat rows",
        },
    ]
    return {
        "gold_pass_rates": [
            {"annotator": a["annotator"], "n_gold": a["n_gold"], "rate": a["gold_pass_rate"]}
            for a in annotators
        ],
        "too_fast_flags": {
            "rule": meta.get("too_fast_rule", ""),
            "threshold_seconds": meta.get("too_fast_threshold_seconds"),
            "annotators": too_fast,
        },
        "exclusions": exclusions,
    }


def _intra(study: Study, summary: dict) -> dict | str:
    """The summary's intra-annotator agreement (`intra.with_intra`), as the results page has it."""
    if not study.repeat_share:
        return "not measured (repeat_share 0)"
    return summary.get("intra") or intra.intra_summary(study)


def _results(study: Study, summary: dict) -> dict:
    if summary.get("empty"):
        return {
            "effect_sizes": [],
            "tests": {"test": "none yet", "rows": []},
            "agreement": {"inter": [], "intra": _intra(study, summary)},
            "denominators": {"per_protocol": [], "itt": []},
            "note": "no judgments yet",
        }
    meta = summary.get("meta", {})
    pref = [r for r in summary.get("preference", []) if r["denominator"] == "all"]
    keys = ("comparison", "criterion", "unit", "n")
    return {
        "effect_sizes": [
            {
                **{k: r[k] for k in keys},
                "win_rate": r["win_rate"],
                "tie_rate": r["tie_rate"],
                "lose_rate": r["lose_rate"],
                "win_rate_wilson": [r["win_rate_wilson_low"], r["win_rate_wilson_high"]],
                "win_rate_ties_half": r["win_rate_ties_half"],
            }
            for r in pref
        ],
        "tests": {
            "test": "two-sided exact sign test on wins vs losses (ties left out)",
            "correction": "Holm",
            "family": meta.get("holm_family", ""),
            "rows": [
                {
                    **{k: r[k] for k in keys[:2]},
                    "p": r["sign_test_p"],
                    "p_holm": r["sign_test_p_holm"],
                }
                for r in pref
            ],
        },
        "agreement": {
            "inter": [{k: r.get(k) for k in AGREEMENT_KEYS} for r in summary.get("agreement", [])],
            "intra": _intra(study, summary),
        },
        "denominators": {
            "per_protocol": "judgments of the comparison and criterion, ties included "
            "(cannot-judge and gold left out)",
            "itt": meta.get("itt_rule", ""),
            "rows": [
                {
                    "comparison": r["comparison"],
                    "criterion": r["criterion"],
                    "n_per_protocol": r.get("n_per_protocol"),
                    "n_itt": r["n"],
                }
                for r in summary.get("itt", [])
                if r["unit"] == "judgments" and r["denominator"] == "all"
            ],
        },
        "length_bias": summary.get("length", "not computed"),
        "bootstrap": {"n_boot": meta.get("n_boot"), "unit": meta.get("bootstrap_unit")},
    }


def write_datasheet(study: Study, out: Path, summary: dict | None = None) -> list[Path]:
    """Write datasheet.json, datasheet.md and datasheet.tex into `out`; return their paths."""
    ds = build_datasheet(study, summary)
    out = Path(out)
    texts = (json.dumps(ds, indent=1, default=str), render_markdown(ds), render_latex(ds))
    paths = []
    for name, text in zip(FILES, texts, strict=True):
        (out / name).write_text(text + "\n", "utf-8")
        paths.append(out / name)
    return paths


def datasheet_view(study: Study, summary: dict) -> dict:
    """The results page's datasheet section: each section's fields as rows, incomplete marked."""
    ds = build_datasheet(study, summary)
    sections = [
        {
            "name": _title(section),
            "rows": [
                {"field": path, "value": _text(value), "incomplete": value == TO_BE_COMPLETED}
                for path, value in _flat(ds[section])
            ],
        }
        for section in SECTIONS
    ]
    return {"sections": sections, "incomplete": incomplete_fields(ds)}


# --- pure renderers ------------------------------------------------------------------------


def incomplete_fields(ds: dict) -> list[str]:
    """Dotted paths (list positions as [i]) of the fields holding `TO_BE_COMPLETED`."""
    found: list[str] = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{path}.{k}" if path else str(k))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{path}[{i}]")
        elif node == TO_BE_COMPLETED:
            found.append(path)

    walk(ds, "")
    return found


def _flat(node: object, path: str = "") -> list[tuple[str, object]]:
    """(dotted path, scalar or list of scalars) pairs of a nested dict/list."""
    if isinstance(node, dict):
        out = []
        for k, v in node.items():
            out += _flat(v, f"{path}.{k}" if path else str(k))
        return out or [(path, "")]
    if isinstance(node, list) and any(isinstance(v, (dict, list)) for v in node):
        out = []
        for i, v in enumerate(node):
            out += _flat(v, f"{path}[{i}]")
        return out
    return [(path, node)]


def _text(value: object) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        return ", ".join(_text(v) for v in value) if value else "none"
    return str(value)


_MD_SPECIAL = set("\\`*_[]<>|#")


def _md(text: str) -> str:
    """Escape Markdown (and raw HTML) so untrusted text stays text inside a table cell."""
    escaped = "".join(
        "&lt;" if ch == "<" else "&gt;" if ch == ">" else f"\\{ch}" if ch in _MD_SPECIAL else ch
        for ch in text
    )
    return " ".join(escaped.split())


def _title(section: str) -> str:
    return section.replace("_", " ").capitalize()


def render_markdown(ds: dict) -> str:
    """The datasheet as Markdown: one table of fields per section, escaped."""
    study = ds.get("study", {})
    lines = [
        f"# Evaluation datasheet: {_md(str(study.get('name', '')))}",
        "",
        f"HEDS {ds.get('heds_version', '3.0')} (Belz & Thomson, after Shimorina & Belz). "
        f"Fields marked *{TO_BE_COMPLETED}* are not known to the platform.",
    ]
    for section in SECTIONS:
        lines += ["", f"## {_title(section)}", "", "| Field | Value |", "| --- | --- |"]
        for path, value in _flat(ds.get(section), ""):
            text = _md(_text(value))
            if value == TO_BE_COMPLETED:
                text = f"**{text}**"
            lines.append(f"| {_md(path) or section} | {text} |")
    return "\n".join(lines)


def render_latex(ds: dict) -> str:
    """The datasheet as a LaTeX fragment (longtable per section), special characters escaped."""
    study = ds.get("study", {})
    lines = [
        "% Evaluation datasheet (HEDS " + _tex(str(ds.get("heds_version", "3.0"))) + ")",
        r"\section*{Evaluation datasheet: " + _tex(str(study.get("name", ""))) + "}",
    ]
    for section in SECTIONS:
        lines += [
            r"\subsection*{" + _tex(_title(section)) + "}",
            r"\begin{longtable}{p{0.38\linewidth}p{0.55\linewidth}}",
            r"Field & Value \\ \hline",
        ]
        for path, value in _flat(ds.get(section), ""):
            text = _tex(" ".join(_text(value).split()))
            if value == TO_BE_COMPLETED:
                text = r"\textbf{" + text + "}"
            lines.append(f"{_tex(path or section)} & {text} \\\\")
        lines.append(r"\end{longtable}")
    return "\n".join(lines)
