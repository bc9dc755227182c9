"""The publication table (Markdown or LaTeX) of a summary."""

from __future__ import annotations

from collections.abc import Sequence

_LATEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex(text: str) -> str:
    return "".join(_LATEX_ESCAPES.get(ch, ch) for ch in text)


def publication_table(
    summary: dict, *, fmt: str = "markdown", criteria: Sequence[str] | None = None
) -> str:
    """The human-evaluation table of a paper: one row per comparison, and for each criterion
    the win / tie / lose percentages of system A and Fleiss' kappa.

    Percentages are judgment-level with denominator "all" (cannot-judge and gold excluded); kappa
    is Fleiss' kappa of that comparison x criterion over items with complete overlap. The first
    line (markdown) or the caption (latex) states unit and denominator. ``fmt`` is "markdown" or
    "latex"; ``criteria`` selects and orders the criteria (default: all, in summary order).
    """
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"fmt must be 'markdown' or 'latex', got {fmt!r}")
    rows = [
        r for r in summary["preference"] if r["unit"] == "judgments" and r["denominator"] == "all"
    ]
    all_crits = list(dict.fromkeys(r["criterion"] for r in rows))
    crits = list(criteria) if criteria is not None else all_crits
    unknown = [c for c in crits if c not in all_crits]
    if unknown:
        raise ValueError(f"criteria {unknown} not in the summary; available: {all_crits}")
    comps = list(dict.fromkeys(r["comparison"] for r in rows))
    cell = {(r["comparison"], r["criterion"]): r for r in rows}
    kappa = {
        (r["comparison"], r["criterion"]): r["fleiss_kappa"]
        for r in summary.get("agreement_by_comparison", [])
    }
    ns = [cell[c, k]["n"] for c in comps for k in crits if (c, k) in cell]
    n_text = (f"{min(ns)}" if min(ns) == max(ns) else f"{min(ns)}-{max(ns)}") if ns else "0"
    caption = (
        "Human evaluation: win / tie / lose (%) of system A against each baseline. "
        f"Unit: judgments; denominator: all judgments of the cell excluding cannot-judge and "
        f"gold items (n = {n_text} per cell). kappa: Fleiss' kappa over items with complete "
        "overlap."
    )

    def pct(r: dict | None, key: str) -> str:
        v = r.get(key) if r else None
        return "-" if v is None else f"{100 * v:.1f}"

    def kap(c: str, k: str) -> str:
        v = kappa.get((c, k))
        return "-" if v is None else f"{v:.2f}"

    if fmt == "markdown":
        head = ["Comparison"]
        for k in crits:
            head += [f"{k} Win", f"{k} Tie", f"{k} Lose", f"{k} κ"]
        lines = [caption, "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in comps:
            vals = [c]
            for k in crits:
                r = cell.get((c, k))
                vals += [
                    pct(r, "win_rate"),
                    pct(r, "tie_rate"),
                    pct(r, "lose_rate"),
                    kap(c, k),
                ]
            lines.append("| " + " | ".join(vals) + " |")
        return "\n".join(lines) + "\n"

    spec = "l" + "cccc" * len(crits)
    lines = [
        r"\begin{table}[t]",
        r"\centering",
        r"\caption{" + _tex(caption).replace("kappa", r"$\kappa$") + "}",
        r"\begin{tabular}{" + spec + "}",
        r"\toprule",
        " & ".join([""] + [r"\multicolumn{4}{c}{" + _tex(k) + "}" for k in crits]) + r" \\",
        " ".join(rf"\cmidrule(lr){{{2 + 4 * i}-{5 + 4 * i}}}" for i in range(len(crits))),
        " & ".join(["Comparison"] + ["Win", "Tie", "Lose", r"$\kappa$"] * len(crits)) + r" \\",
        r"\midrule",
    ]
    for c in comps:
        vals = [_tex(c)]
        for k in crits:
            r = cell.get((c, k))
            vals += [
                pct(r, "win_rate"),
                pct(r, "tie_rate"),
                pct(r, "lose_rate"),
                kap(c, k),
            ]
        lines.append(" & ".join(vals) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"
