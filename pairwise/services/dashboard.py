"""The results page: tables and server-drawn SVG plots, all from `export.study_summary`."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from pairwise.models import Checkpoint, Study  # noqa: E402
from pairwise.services import datasheet, export, generation, studies  # noqa: E402

WIN, TIE, LOSE = "#2f7d4a", "#b8bec6", "#b6463a"


def _svg(fig) -> str:
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg") :]  # drop the XML prolog so it can be inlined


def preference_plot(rows: list[dict]) -> str:
    """Stacked win/tie/lose bars per comparison and criterion, whiskers = Wilson 95% CI on wins."""
    if not rows:
        return ""
    labels = [f"{r['comparison']} · {r['criterion']}" for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.42 * len(rows) + 1.2))
    y = range(len(rows))
    wins = [100 * r["win_rate"] for r in rows]
    ties = [100 * r["tie_rate"] for r in rows]
    loses = [100 * r["lose_rate"] for r in rows]
    ax.barh(y, wins, color=WIN, label="A wins")
    ax.barh(y, ties, left=wins, color=TIE, label="tie")
    ax.barh(
        y, loses, left=[w + t for w, t in zip(wins, ties, strict=True)], color=LOSE, label="B wins"
    )
    low = [100 * r["win_rate"] - 100 * r["win_rate_wilson_low"] for r in rows]
    high = [100 * r["win_rate_wilson_high"] - 100 * r["win_rate"] for r in rows]
    ax.errorbar(wins, list(y), xerr=[low, high], fmt="none", ecolor="black", capsize=3, lw=1)
    ax.set_yticks(list(y), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of judgments (all, ties included)")
    ax.legend(loc="lower right", fontsize=8, ncols=3)
    return _svg(fig)


def ranking_plot(rows: list[dict]) -> str:
    if not rows:
        return ""
    fig, ax = plt.subplots(figsize=(6, 0.4 * len(rows) + 1))
    y = range(len(rows))
    scores = [r["score"] for r in rows]
    err = [[r["score"] - r["ci_low"] for r in rows], [r["ci_high"] - r["score"] for r in rows]]
    ax.errorbar(scores, list(y), xerr=err, fmt="o", color="#2457c5", capsize=3)
    ax.set_yticks(list(y), [r["system"] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.axvline(0, color="#999", lw=0.8)
    ax.set_xlabel("Bradley–Terry log-strength (95% bootstrap CI)")
    return _svg(fig)


def results_context(study: Study, *, checkpoint: str | None = None) -> dict:
    summary = export.study_summary(study, checkpoint=checkpoint)
    context = {
        "summary": summary,
        "overview": studies.study_overview(study),
        "gen": generation.generation_progress(study),
        "checkpoint_filter": checkpoint or "",
        "checkpoints": Checkpoint.objects.filter(
            pk__in=[c.pk for c in generation.study_checkpoints(study)]
        ).select_related("system"),
        # intention-to-treat beside per-protocol: shown even before the first judgment
        "availability": summary.get("availability", []),
        "itt_rows": [
            r
            for r in summary.get("itt", [])
            if r["unit"] == "judgments" and r["denominator"] == "all"
        ],
        # the datasheet describes the whole study: not drawn for a checkpoint filter
        "datasheet": None if checkpoint else datasheet.datasheet_view(study, summary),
    }
    if summary.get("empty"):
        return context

    # gold items never reach these tables: `summarize` leaves gold judgments out
    def rows(table: str, denominator: str) -> list[dict]:
        return [r for r in summary[table] if r["denominator"] == denominator]

    judgment_rows = rows("preference", "all")
    context.update(
        {
            "judgment_rows": judgment_rows,
            "nontied_rows": rows("preference", "non-tied"),
            "item_rows": rows("preference_items", "all"),
            "preference_svg": preference_plot(judgment_rows),
            "ranking_svg": ranking_plot(summary["ranking"]),
            "table_md": export.stats.publication_table(summary, fmt="markdown"),
        }
    )
    return context
