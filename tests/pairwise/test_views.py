"""Server-rendered pages: login everywhere but /healthz, roles, annotate flow, CSRF."""

import pytest
from django.test import Client

from pairwise.models import Judgment
from tests.factories import UserFactory, annotator, make_study, researcher

pytestmark = pytest.mark.django_db


def test_login_is_required_everywhere_but_healthz():
    study, _, _ = make_study(n_contexts=1)
    client = Client()
    for url in [
        "/",
        f"/study/{study.pk}/annotate/",
        "/studies/",
        f"/studies/{study.pk}/results/",
        "/admin/",
        "/api/docs/",
    ]:
        r = client.get(url)
        assert r.status_code == 302 and "/login/" in r["Location"], url
    assert client.get("/api/studies/").status_code in (401, 403)
    assert client.get("/healthz").status_code in (200, 503)  # answers without login


def test_annotators_reach_only_annotator_pages():
    study, _, _ = make_study(n_contexts=1)
    client = Client()
    client.force_login(annotator(study, username="v-ann"))
    assert client.get("/").status_code == 200
    assert client.get(f"/study/{study.pk}/annotate/").status_code == 200
    for url in [
        "/studies/",
        f"/studies/{study.pk}/",
        f"/studies/{study.pk}/results/",
        f"/studies/{study.pk}/export/csv/",
    ]:
        assert client.get(url).status_code == 403, url
    assert client.get("/admin/").status_code == 302  # not staff: admin login


def test_researchers_see_studies_and_results_but_do_not_judge():
    study, _, _ = make_study(n_contexts=2)
    client = Client()
    client.force_login(researcher(study, username="v-res"))
    assert client.get("/").status_code == 302
    assert client.get(f"/studies/{study.pk}/").status_code == 200
    assert client.get(f"/studies/{study.pk}/results/").status_code == 200
    assert client.get(f"/study/{study.pk}/annotate/").status_code == 403
    no_role = Client()
    no_role.force_login(UserFactory(username="nobody"))
    assert no_role.get("/").status_code == 403


def test_annotate_page_submit_and_done_page():
    study, _, _ = make_study(n_contexts=1, k=1)
    user = annotator(study, username="v-ann2")
    client = Client()
    client.force_login(user)
    page = client.get(f"/study/{study.pk}/annotate/")
    body = page.content.decode()
    assert "Item 1 of 1" in body and "Reply A" in body and "Reply B" in body
    assert 'name="choice-0"' in body and "<kbd>1</kbd>" in body
    item_id = page.context["item"]["id"]
    data = {"item": item_id, **{f"choice-{i}": "left" for i in range(len(study.criteria))}}
    r = client.post(f"/study/{study.pk}/annotate/", data)
    assert r.status_code == 302
    again = client.post(f"/study/{study.pk}/annotate/", data)  # double submit
    assert again.status_code == 302
    assert Judgment.objects.filter(annotator=user).count() == 1
    done = client.get(f"/study/{study.pk}/annotate/", follow=True)
    assert "All done" in done.content.decode()


def test_incomplete_form_keeps_the_item_with_a_message():
    study, _, _ = make_study(n_contexts=1, k=1)
    client = Client()
    client.force_login(annotator(study, username="v-ann3"))
    item_id = client.get(f"/study/{study.pk}/annotate/").context["item"]["id"]
    r = client.post(
        f"/study/{study.pk}/annotate/", {"item": item_id, "choice-0": "left"}, follow=True
    )
    assert "Please complete the form" in r.content.decode()
    assert r.context["item"]["id"] == item_id
    assert not Judgment.objects.exists()


def test_csrf_is_enforced_on_submit():
    study, _, _ = make_study(n_contexts=1)
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator(study, username="v-ann4"))
    r = client.post(f"/study/{study.pk}/annotate/", {"item": "x"})
    assert r.status_code == 403


def test_guidelines_markdown_is_rendered_and_sanitised():
    study, _, _ = make_study(
        n_contexts=1, guidelines="# Be kind\n\n**Judge** the reply.<script>alert(1)</script>"
    )
    client = Client()
    client.force_login(annotator(study, username="v-ann5"))
    body = client.get(f"/study/{study.pk}/guidelines/").content.decode()
    assert "<h1>Be kind</h1>" in body and "<strong>Judge</strong>" in body
    assert "<script>alert(1)</script>" not in body


HUGE = "99999999999999999999"  # no bigint holds it


def test_malformed_ids_and_values_answer_404_or_400_naming_the_parameter():
    """Found by hand: these answered 500 (a database error, or a ValueError from the ORM)."""
    study, (care, esconv), _ = make_study(n_contexts=2, systems=("CARE", "ESConv"))
    ann, res = Client(), Client()
    ann.force_login(annotator(study, username="bad-ann"))
    res.force_login(researcher(study, username="bad-res"))
    for url in [
        f"/api/annotator/studies/{HUGE}/next/",
        f"/api/annotator/studies/{HUGE}/progress/",
        f"/study/{HUGE}/annotate/",
        f"/study/{HUGE}/guidelines/",
    ]:
        assert ann.get(url).status_code == 404, url
    for url in [
        f"/studies/{HUGE}/",
        f"/studies/{HUGE}/results/",
        f"/api/studies/{HUGE}/",
        f"/api/studies/{HUGE}/results/",
        f"/api/checkpoints/{HUGE}/",
        "/api/studies/abc/",
    ]:
        assert res.get(url).status_code == 404, url
    assert res.post(f"/api/annotator/studies/{HUGE}/judgments/", {}).status_code in (403, 404)

    for bad in ["ESConvX", "ESConv v99", HUGE, "abc v"]:
        page = res.get(f"/studies/{study.pk}/results/", {"checkpoint": bad})
        assert page.status_code == 400 and "checkpoint" in page.content.decode(), bad
        api = res.get(f"/api/studies/{study.pk}/results/", {"checkpoint": bad})
        assert api.status_code == 400 and "checkpoint" in api.json(), bad
    # a system name is a filter too: all its checkpoints
    assert res.get(f"/studies/{study.pk}/results/", {"checkpoint": "ESConv"}).status_code == 200
    assert res.get(f"/api/studies/{study.pk}/results/", {"checkpoint": "ESConv"}).status_code == 200

    for bad in ["abc", HUGE, ""]:
        requeue = res.post(f"/studies/{study.pk}/requeue/", {"checkpoint": bad})
        assert requeue.status_code == 400 and "checkpoint" in requeue.content.decode(), bad
    api = res.post(f"/api/studies/{study.pk}/requeue/", {"checkpoint": HUGE})
    assert api.status_code == 400 and "checkpoint" in api.json()
