"""Sample-size planning and anytime-valid monitoring of a pairwise study (issue #18, part 3).

Pure functions, no ORM (like the stats package): `plan_study` turns an expected win rate into
the numbers of non-tied judgments, judgments and items; `icc_oneway` estimates the intra-item
correlation that the design effect needs; `confidence_sequence` is the beta-binomial mixture
confidence sequence for the non-tied win rate, valid however often a researcher looks;
`monitoring_rows` puts the last two together for the results page, the API and the export. The
formulas, their rounding and their references are in docs/statistics.md ("Power planning",
"Monitoring")."""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.special import betaln
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_effectsize

from pairwise.services.errors import ServiceError

# The study page's and the API's defaults where the study cannot supply a value.
DEFAULT_WIN_RATE = 0.65
DEFAULT_TIE_SHARE = 0.2
DEFAULT_ALPHA = 0.05
DEFAULT_POWER = 0.8
# Robbins' uniform mixing prior Beta(1, 1) for the confidence sequence.
CS_PRIOR = (1.0, 1.0)
ICC_ESTIMATOR = (
    "one-way ANOVA ICC(1) of the judgment outcome (A won 1, tie 0.5, B won 0) within "
    "item x criterion, clipped to [0, 1]"
)
CS_RULE = (
    "95% beta-binomial mixture confidence sequence (uniform Beta(1, 1) prior) of the non-tied "
    "win rate, valid at every look; more_items from the planner at the observed win rate and "
    "tie share, alpha 0.05 / comparisons, power 0.8, the study's k and ICC"
)


class PlanError(ServiceError):
    """A planner input is out of range; the message starts with the flag's name."""


@dataclass(frozen=True)
class Plan:
    """The planner's answer; each count is rounded up from the one before."""

    win_rate: float
    tie_share: float
    alpha: float
    power: float
    comparisons: int
    k: int
    icc: float
    effect_size_h: float
    alpha_per_comparison: float
    design_effect: float
    non_tied_judgments: int
    judgments: int
    items: int

    def as_dict(self) -> dict:
        return asdict(self)

    def counts(self) -> dict:
        """The command's last JSON line."""
        return {
            "non_tied_judgments": self.non_tied_judgments,
            "judgments": self.judgments,
            "items": self.items,
        }


def _number(name: str, value, kind=float):
    try:
        out = kind(value)
    except (TypeError, ValueError):
        raise PlanError(name, f"expected a {kind.__name__}, got {str(value)[:20]!r}") from None
    if kind is float and not math.isfinite(out):
        raise PlanError(name, f"expected a finite number, got {value!r}")
    return out


def check_plan(
    *,
    win_rate,
    tie_share,
    alpha,
    power,
    comparisons,
    k,
    icc,
) -> dict:
    """Parse and validate the planner inputs; raise PlanError naming the first bad one."""
    v = {
        "win_rate": _number("win_rate", win_rate),
        "tie_share": _number("tie_share", tie_share),
        "alpha": _number("alpha", alpha),
        "power": _number("power", power),
        "comparisons": _number("comparisons", comparisons, int),
        "k": _number("k", k, int),
        "icc": _number("icc", icc),
    }
    if not 0 < v["win_rate"] < 1 or v["win_rate"] == 0.5:
        raise PlanError("win_rate", f"expected 0 < P < 1 and P != 0.5, got {v['win_rate']:g}")
    if not 0 <= v["tie_share"] < 1:
        raise PlanError("tie_share", f"expected 0 <= T < 1, got {v['tie_share']:g}")
    if not 0 < v["alpha"] < 1:
        raise PlanError("alpha", f"expected 0 < A < 1, got {v['alpha']:g}")
    if not 0 < v["power"] < 1:
        raise PlanError("power", f"expected 0 < B < 1, got {v['power']:g}")
    if v["comparisons"] < 1:
        raise PlanError("comparisons", f"expected a whole number >= 1, got {v['comparisons']}")
    if v["k"] < 1:
        raise PlanError("k", f"expected a whole number >= 1, got {v['k']}")
    if not 0 <= v["icc"] <= 1:
        raise PlanError("icc", f"expected 0 <= R <= 1, got {v['icc']:g}")
    return v


def plan_study(
    *,
    win_rate: float,
    tie_share: float = DEFAULT_TIE_SHARE,
    alpha: float = DEFAULT_ALPHA,
    power: float = DEFAULT_POWER,
    comparisons: int = 1,
    k: int = 1,
    icc: float = 0.0,
) -> Plan:
    """Items needed to detect a win rate `win_rate` against 0.5 on one comparison.

    One-sample two-sided test of a proportion against 0.5 with Cohen's h
    (`proportion_effectsize(P, 0.5)`) and `NormalIndPower(...).solve_power(ratio=0)` at alpha / M
    (Bonferroni, the conservative bound of the Holm correction the results use). Then
    judgments = non-tied / (1 - T) and items = judgments x (1 + (K - 1) R) / K. Each step is
    rounded up (ceil), so each count suffices for the next.

    >>> plan_study(win_rate=0.65, tie_share=0.2, comparisons=1, k=3, icc=0.0).counts()
    {'non_tied_judgments': 85, 'judgments': 107, 'items': 36}
    """
    v = check_plan(
        win_rate=win_rate,
        tie_share=tie_share,
        alpha=alpha,
        power=power,
        comparisons=comparisons,
        k=k,
        icc=icc,
    )
    h = float(proportion_effectsize(v["win_rate"], 0.5))
    a = v["alpha"] / v["comparisons"]
    with warnings.catch_warnings():  # statsmodels warns, then returns NaN, when it cannot solve
        warnings.simplefilter("ignore")
        n = float(
            NormalIndPower().solve_power(
                effect_size=h, alpha=a, power=v["power"], ratio=0, alternative="two-sided"
            )
        )
    if not math.isfinite(n) or n > 1e12:
        raise PlanError(
            None,
            f"statsmodels finds no sample size for win rate {v['win_rate']:g}, alpha "
            f"{a:.3g} and power {v['power']:g} (the effect is too small or alpha too extreme)",
        )
    non_tied = math.ceil(n)
    judgments = math.ceil(non_tied / (1 - v["tie_share"]))
    deff = 1 + (v["k"] - 1) * v["icc"]
    items = math.ceil(judgments * deff / v["k"])
    return Plan(
        **v,
        effect_size_h=h,
        alpha_per_comparison=a,
        design_effect=deff,
        non_tied_judgments=non_tied,
        judgments=judgments,
        items=items,
    )


def icc_oneway(groups, values) -> float:
    """One-way random-effects ICC(1) (Shrout & Fleiss 1979, ICC(1,1)) of `values` within `groups`.

    ICC(1) = (MSB - MSW) / (MSB + (k0 - 1) MSW), with k0 the mean group size corrected for
    unequal sizes (k0 = (N - sum n_i^2 / N) / (g - 1)); groups of one value are left out. NaN
    with fewer than two groups; clipped to [0, 1] for the design effect (a negative estimate
    means no clustering).
    """
    g = np.asarray(groups)
    y = np.asarray(values, dtype=float)
    codes = np.unique(g, return_inverse=True)[1]
    sizes = np.bincount(codes)
    keep = sizes[codes] >= 2
    codes, y = np.unique(codes[keep], return_inverse=True)[1], y[keep]
    sizes = np.bincount(codes)
    n_groups, n = sizes.size, y.size
    if n_groups < 2 or n <= n_groups:
        return math.nan
    means = np.bincount(codes, weights=y) / sizes
    grand = y.mean()
    msb = float((sizes * (means - grand) ** 2).sum() / (n_groups - 1))
    msw = float(((y - means[codes]) ** 2).sum() / (n - n_groups))
    k0 = (n - (sizes**2).sum() / n) / (n_groups - 1)
    denom = msb + (k0 - 1) * msw
    if denom <= 0:
        return math.nan
    return (msb - msw) / denom


# A judgment's outcome as a number for the ICC: A won 1, tie 0.5, B won 0.
_OUTCOME_VALUE = {"a": 1.0, "tie": 0.5, "b": 0.0}


def study_icc(long_df) -> float:
    """ICC(1) of the judgment outcome (A 1, tie 0.5, B 0) within item x criterion, clipped to
    [0, 1]; NaN where there are not enough judged items. Gold and cannot-judge rows are left out.
    """
    if long_df is None or long_df.empty:
        return math.nan
    df = long_df[~long_df["is_gold"].astype(bool) & long_df["outcome"].isin(_OUTCOME_VALUE)]
    if df.empty:
        return math.nan
    icc = icc_oneway(
        (df["item_id"].astype(str) + "\x1f" + df["criterion"].astype(str)).to_numpy(),
        df["outcome"].map(_OUTCOME_VALUE).to_numpy(),
    )
    return icc if math.isnan(icc) else min(max(icc, 0.0), 1.0)


def log_mixture_ratio(successes: int, n: int, p: float, prior=CS_PRIOR) -> float:
    """log M_n(p): the Beta(a, b) mixture of Bernoulli likelihood ratios against p.

    M_n(p) = B(a + S, b + n - S) / B(a, b) / (p^S (1 - p)^(n - S)), a nonnegative martingale
    with M_0 = 1 when the draws are Bernoulli(p); it equals the beta-binomial pmf of S over the
    binomial pmf of S (the binomial coefficients cancel).
    """
    a, b = prior
    s, f = successes, n - successes
    log_mix = betaln(a + s, b + f) - betaln(a, b)
    log_null = (s * math.log(p) if s else 0.0) + (f * math.log1p(-p) if f else 0.0)
    return log_mix - log_null


def confidence_sequence(
    successes: int, n: int, *, alpha: float = 0.05, prior=CS_PRIOR
) -> tuple[float, float]:
    """The (1 - alpha) beta-binomial mixture confidence sequence for a Bernoulli mean at time n.

    {p : M_n(p) < 1 / alpha}; by Ville's inequality P(exists n: p_true outside) <= alpha, so it
    holds at every n at once, however often one looks (Robbins 1970; Howard, Ramdas, McAuliffe
    & Sekhon 2021, Sec. 3 conjugate mixtures). log M_n(p) is convex in p with its minimum at
    S / n, so the set is an interval whose ends are found by root finding. (0, 1) at n = 0.

    >>> confidence_sequence(0, 0)
    (0.0, 1.0)
    >>> lo, hi = confidence_sequence(70, 100); round(lo, 3), round(hi, 3)
    (0.543, 0.831)
    """
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"successes: expected 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    level = math.log(1 / alpha)
    p_hat = successes / n

    def f(p: float) -> float:
        return log_mixture_ratio(successes, n, p, prior) - level

    eps = 1e-12
    lo = 0.0 if successes == 0 or f(eps) < 0 else brentq(f, eps, p_hat, xtol=1e-12)
    hi = 1.0 if successes == n or f(1 - eps) < 0 else brentq(f, p_hat, 1 - eps, xtol=1e-12)
    return float(lo), float(hi)


def monitoring_rows(
    summary: dict, *, k: int, icc: float, alpha: float = 0.05, power: float = DEFAULT_POWER
) -> list[dict]:
    """Per comparison x criterion (judgment level): wins of non-tied judgments, the 95%
    confidence sequence, whether it excludes 0.5, and the items the planner still expects.

    The planner takes the observed non-tied win rate and tie share, alpha / (number of
    comparisons), `power`, the study's k and its ICC; more_items = planned items minus the items
    judged so far, never below 0, and 0 once the sequence excludes 0.5. None where the observed
    rate is exactly 0.5 or nothing is judged yet (no effect to plan for).
    """
    rows = [
        r
        for r in summary.get("preference", [])
        if r.get("unit") == "judgments" and r.get("denominator") == "all"
    ]
    items = {
        (r["comparison"], r["criterion"]): r["n"]
        for r in summary.get("preference_items", [])
        if r.get("denominator") == "all"
    }
    m = max(1, len({r["comparison"] for r in rows}))
    icc_used = 0.0 if icc is None or math.isnan(icc) else icc
    out = []
    for r in rows:
        w, t, l_ = int(r["wins"]), int(r["ties"]), int(r["losses"])
        n_nt, n_all = w + l_, w + t + l_
        lo, hi = confidence_sequence(w, n_nt, alpha=alpha)
        excludes = lo > 0.5 or hi < 0.5
        judged = int(items.get((r["comparison"], r["criterion"]), 0))
        p_hat = w / n_nt if n_nt else math.nan
        planned = more = None
        if excludes:
            more = 0
        elif n_nt and p_hat != 0.5 and 0 < p_hat < 1:
            try:
                planned = plan_study(
                    win_rate=p_hat,
                    tie_share=t / n_all,
                    alpha=alpha,
                    power=power,
                    comparisons=m,
                    k=k,
                    icc=icc_used,
                ).items
            except PlanError:  # an observed rate too close to 0.5 to plan for
                planned = None
            else:
                more = max(0, planned - judged)
        out.append(
            {
                "comparison": r["comparison"],
                "criterion": r["criterion"],
                "wins": w,
                "non_tied": n_nt,
                "ties": t,
                "win_rate": p_hat,
                "cs_low": lo,
                "cs_high": hi,
                "cs_level": 1 - alpha,
                "excludes_half": excludes,
                "items_judged": judged,
                "planned_items": planned,
                "more_items": more,
            }
        )
    return out
