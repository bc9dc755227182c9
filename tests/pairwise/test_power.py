"""Power planning and anytime-valid monitoring (issue #18, part 3): the planner against
statsmodels and a hand computation, the ICC against Shrout & Fleiss (1979), the confidence
sequence against scipy's beta-binomial and a seeded simulation, and the command, study page,
API, results page and export that carry them."""

import io
import json
import math

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from scipy import stats as sps
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import proportion_confint, proportion_effectsize

from pairwise.services import allocation
from pairwise.services.export import export_study, study_summary
from pairwise.services.power import (
    PlanError,
    confidence_sequence,
    icc_oneway,
    plan_study,
)
from tests.factories import annotator, make_study, researcher


def _statsmodels_plan(p, t, a, b, m, k, r):
    """The issue's recipe, written out here apart from the code under test."""
    n = NormalIndPower().solve_power(
        effect_size=proportion_effectsize(p, 0.5),
        alpha=a / m,
        power=b,
        ratio=0,
        alternative="two-sided",
    )
    non_tied = math.ceil(n)
    judgments = math.ceil(non_tied / (1 - t))
    return non_tied, judgments, math.ceil(judgments * (1 + (k - 1) * r) / k)


@pytest.mark.parametrize(
    "p, t, a, b, m, k, r",
    [
        (0.65, 0.2, 0.05, 0.8, 1, 3, 0.0),
        (0.6, 0.1, 0.05, 0.9, 4, 3, 0.3),
        (0.35, 0.0, 0.01, 0.8, 2, 5, 1.0),
        (0.55, 0.4, 0.1, 0.95, 10, 1, 0.5),
        (0.8, 0.25, 0.05, 0.8, 3, 2, 0.15),
    ],
)
def test_planner_agrees_with_statsmodels_to_the_judgment(p, t, a, b, m, k, r):
    plan = plan_study(win_rate=p, tie_share=t, alpha=a, power=b, comparisons=m, k=k, icc=r)
    assert (plan.non_tied_judgments, plan.judgments, plan.items) == _statsmodels_plan(
        p, t, a, b, m, k, r
    )
    assert plan.design_effect == pytest.approx(1 + (k - 1) * r)


def test_planner_hand_checkable_case():
    # h = 2 asin(sqrt 0.6) - 2 asin(sqrt 0.5) = 0.201358; n = ((1.959964 + 0.841621) / h)^2
    # = 193.58 -> 194 non-tied; / (1 - 0.2) = 242.5 -> 243 judgments;
    # x (1 + 2 x 0.1) / 3 = 97.2 -> 98 items
    plan = plan_study(
        win_rate=0.6, tie_share=0.2, alpha=0.05, power=0.8, comparisons=1, k=3, icc=0.1
    )
    assert plan.effect_size_h == pytest.approx(0.201358, abs=1e-6)
    assert plan.counts() == {"non_tied_judgments": 194, "judgments": 243, "items": 98}


@pytest.mark.parametrize(
    "flag, value, name",
    [
        ("--win-rate", "0.5", "--win-rate"),
        ("--win-rate", "1", "--win-rate"),
        ("--win-rate", "abc", "--win-rate"),
        ("--tie-share", "1", "--tie-share"),
        ("--tie-share", "-0.1", "--tie-share"),
        ("--alpha", "0", "--alpha"),
        ("--power", "1", "--power"),
        ("--comparisons", "0", "--comparisons"),
        ("--comparisons", "1.5", "--comparisons"),
        ("--k", "0", "--k"),
        ("--icc", "1.2", "--icc"),
        ("--icc", "nan", "--icc"),
    ],
)
def test_plan_study_command_names_the_bad_flag(flag, value, name):
    with pytest.raises(CommandError, match=f"^{name}: expected"):
        call_command("plan_study", f"{flag}={value}", stdout=io.StringIO())


def test_plan_study_command_prints_a_summary_then_one_json_line():
    out = io.StringIO()
    call_command(
        "plan_study",
        *("--win-rate", "0.6", "--tie-share", "0.2", "--alpha", "0.05", "--power", "0.8"),
        *("--comparisons", "1", "--k", "3", "--icc", "0.1"),
        stdout=out,
    )
    lines = out.getvalue().strip().splitlines()
    assert "Cohen's h" in lines[0]
    assert json.loads(lines[-1]) == {"non_tied_judgments": 194, "judgments": 243, "items": 98}


def test_icc_matches_shrout_and_fleiss_1979():
    # Shrout & Fleiss (1979), Table 2: 6 targets x 4 judges; ICC(1,1) = .17
    ratings = [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]]
    groups = [i for i, row in enumerate(ratings) for _ in row]
    assert round(icc_oneway(groups, np.ravel(ratings)), 2) == 0.17


@pytest.mark.parametrize("s, n", [(7, 10), (70, 100), (300, 500), (3, 40), (0, 25), (25, 25)])
def test_confidence_sequence_bounds_are_where_the_beta_binomial_mixture_reaches_1_over_alpha(s, n):
    # the mixture martingale is the Beta(1, 1)-binomial pmf over the binomial pmf (scipy)
    lo, hi = confidence_sequence(s, n, alpha=0.05)

    def ratio(p):
        return sps.betabinom.pmf(s, n, 1, 1) / sps.binom.pmf(s, n, p)

    for bound, edge in ((lo, 0.0), (hi, 1.0)):
        if bound == edge:  # every p on that side stays in the set
            assert ratio(min(max(edge, 1e-9), 1 - 1e-9)) < 20
        else:
            assert ratio(bound) == pytest.approx(20, rel=1e-6)
    assert lo <= s / n <= hi


def test_confidence_sequence_is_wider_than_wilson_at_the_same_n():
    for s, n in ((60, 100), (300, 500), (12, 20)):
        lo, hi = confidence_sequence(s, n)
        w_lo, w_hi = proportion_confint(s, n, alpha=0.05, method="wilson")
        assert lo < w_lo and hi > w_hi


def test_confidence_sequence_covers_the_truth_at_every_look_while_wilson_does_not():
    # 200 seeded runs of 500 Bernoulli(0.6) draws, looked at after every draw (every 5th after
    # the first 100, to keep the test quick): the share of runs whose sequence has missed 0.6
    # at some look stays within 5% (+ 3 points of simulation slack); Wilson's running miss
    # rate, looked at as often, climbs far above 5%.
    rng = np.random.default_rng(18)
    p, runs = 0.6, 200
    wins = (rng.random((runs, 500)) < p).cumsum(axis=1)
    looks = [*range(1, 101), *range(105, 501, 5)]
    cs_missed = np.zeros(runs, dtype=bool)
    wilson_missed = np.zeros(runs, dtype=bool)
    for t in looks:
        s = wins[:, t - 1]
        for r in np.flatnonzero(~cs_missed):
            lo, hi = confidence_sequence(int(s[r]), t)
            cs_missed[r] = not lo <= p <= hi
        w_lo, w_hi = proportion_confint(s, t, alpha=0.05, method="wilson")
        wilson_missed |= (w_lo > p) | (w_hi < p)
        assert cs_missed.mean() <= 0.08, f"running miss rate {cs_missed.mean()} after {t} draws"
    assert wilson_missed.mean() > 0.15


def test_planner_rejects_inputs_statsmodels_cannot_solve():
    with pytest.raises(PlanError, match="no sample size"):
        plan_study(win_rate=0.65, alpha=1e-300)


def _judged_study():
    """Two comparisons, k = 3, judged through the allocator: CARE wins 80% against ESConv (the
    sequence excludes 50% after 36 judgments) and 55% against ExTES (it does not yet)."""
    study, checkpoints, _ = make_study(n_contexts=12, systems=("CARE", "ESConv", "ExTES"), k=3)
    # A wins 4 of every 5 judgments against ESConv and 11 of every 20 against ExTES, counted per
    # comparison, so the outcome does not hang on the order the (seeded at random) study serves
    a_wins_at = {checkpoints[1].pk: lambda n: n % 5 != 4, checkpoints[2].pk: lambda n: n % 20 < 11}
    judged = dict.fromkeys(a_wins_at, 0)
    for i in range(3):
        user = annotator(study, username=f"pw{i}")
        while (item := allocation.next_item(study, user)) is not None:
            b = item.comparison.checkpoint_b_id
            a_wins = a_wins_at[b](judged[b])
            judged[b] += 1
            choice = "left" if item.a_on_left == a_wins else "right"
            allocation.submit(
                study, user, item.public_id, {c: choice for c in study.criteria}, client_seconds=12
            )
    return study


@pytest.mark.django_db
def test_monitoring_on_results_page_api_and_export(tmp_path):
    study = _judged_study()
    summary = study_summary(study, n_boot=20)
    rows = summary["monitoring"]
    judged = [r for r in summary["preference"] if r["unit"] == "judgments"]
    assert len(rows) == len(judged) // 2  # one per comparison x criterion
    for r in rows:
        assert r["non_tied"] == r["wins"] + next(
            j["losses"]
            for j in judged
            if (j["comparison"], j["criterion"]) == (r["comparison"], r["criterion"])
        )
        lo, hi = confidence_sequence(r["wins"], r["non_tied"])
        assert (r["cs_low"], r["cs_high"]) == (pytest.approx(lo), pytest.approx(hi))
        assert r["excludes_half"] == (lo > 0.5 or hi < 0.5)
        if r["excludes_half"]:
            assert r["more_items"] == 0
        elif r["more_items"] is not None:
            planned = _statsmodels_plan(
                r["wins"] / r["non_tied"],
                r["ties"] / (r["non_tied"] + r["ties"]),
                0.05,
                0.8,
                2,
                3,
                summary["meta"]["icc"] or 0.0,
            )[2]
            assert r["more_items"] == max(0, planned - r["items_judged"])
    assert 0 <= summary["meta"]["icc"] <= 1
    assert {r["excludes_half"] for r in rows} == {True, False}
    assert any(r["more_items"] for r in rows)  # the planner wants more for the close one

    client = Client()
    client.force_login(researcher(study, username="pw-res"))
    api = client.get(f"/api/studies/{study.pk}/results/").json()
    assert api["monitoring"] == rows and "preference" in api and "itt" in api
    page = client.get(f"/studies/{study.pk}/results/").content.decode()
    table = page.split('id="monitoring-table"')[1].split("</table>")[0]
    first = rows[0]
    assert f"{first['wins']} / {first['non_tied']}" in table
    assert f"{100 * first['cs_low']:.1f}–{100 * first['cs_high']:.1f}" in table

    export_study(study, "json", tmp_path)
    exported = json.loads((tmp_path / "summary.json").read_text())
    assert exported["monitoring"] == rows and "preference" in exported


@pytest.mark.django_db
def test_plan_api_prefills_from_the_study_and_names_a_bad_parameter():
    study = _judged_study()
    client = Client()
    client.force_login(researcher(study, username="pw-api"))
    url = f"/api/studies/{study.pk}/plan/"
    body = client.get(url).json()
    assert (body["k"], body["comparisons"], body["win_rate"]) == (3, 2, 0.65)
    assert 0 <= body["icc"] <= 1
    got = client.get(url, {"win_rate": "0.6", "tie_share": "0.2", "icc": "0.1"}).json()
    assert (got["non_tied_judgments"], got["judgments"], got["items"]) == _statsmodels_plan(
        0.6, 0.2, 0.05, 0.8, 2, 3, 0.1
    )
    for name, bad in (("win_rate", "0.5"), ("alpha", "x"), ("k", "0"), ("icc", "inf")):
        res = client.get(url, {name: bad})
        assert res.status_code == 400 and name in res.json(), (name, res.content)
    other, _, _ = make_study(n_contexts=2)
    assert client.get(f"/api/studies/{other.pk}/plan/").status_code == 404


@pytest.mark.django_db
def test_study_page_planner_is_prefilled_and_recomputes_from_the_form():
    study, _, _ = make_study(n_contexts=3, systems=("CARE", "ESConv", "ExTES"), k=3)
    client = Client()
    client.force_login(researcher(study, username="pw-page"))
    page = client.get(f"/studies/{study.pk}/").content.decode()
    form = page.split('id="planner-form"')[1].split("</form>")[0]
    assert 'name="k" min="1" value="3"' in form and 'name="comparisons" min="1" value="2"' in form
    assert 'name="win_rate" step="any" min="0" max="1" value="0.65"' in form
    assert "<script" not in page.split('id="planner"')[1].split("</section>")[0]
    items = _statsmodels_plan(0.65, 0.2, 0.05, 0.8, 2, 3, 0.0)[2]
    assert f'<strong id="plan-items">{items}</strong>' in page
    res = client.get(f"/studies/{study.pk}/", {"win_rate": "0.6", "icc": "0.1", "k": "3"})
    items = _statsmodels_plan(0.6, 0.2, 0.05, 0.8, 2, 3, 0.1)[2]
    assert f'<strong id="plan-items">{items}</strong>' in res.content.decode()
    bad = client.get(f"/studies/{study.pk}/", {"tie_share": "1"})
    assert bad.status_code == 400 and 'id="planner-error"' in bad.content.decode()
    assert "tie_share: expected" in bad.content.decode()


@pytest.mark.django_db
def test_plan_study_from_study_takes_k_comparisons_and_icc():
    study = _judged_study()
    out = io.StringIO()
    call_command("plan_study", "--from-study", str(study.pk), "--win-rate", "0.6", stdout=out)
    api_client = Client()
    api_client.force_login(researcher(study, username="pw-cmd"))
    icc = api_client.get(f"/api/studies/{study.pk}/plan/").json()["icc"]
    assert json.loads(out.getvalue().strip().splitlines()[-1]) == dict(
        zip(
            ("non_tied_judgments", "judgments", "items"),
            _statsmodels_plan(0.6, 0.2, 0.05, 0.8, 2, 3, icc),
            strict=True,
        )
    )
    with pytest.raises(CommandError, match="^--from-study: "):
        call_command("plan_study", "--from-study", "no-such-study", stdout=io.StringIO())
