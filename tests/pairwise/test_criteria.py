"""Criteria and guidelines as versioned records (issue #18, section 1): creation, editing in
place or as a new version, the versions every judgment records, what annotators see, the API,
the study page, the `edit_criteria` command, the export and import, and the migration."""

from __future__ import annotations

import hashlib
import importlib
import io

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from pairwise.models import DEFAULT_DEFINITIONS, Criterion, GuidelineVersion, Judgment, Study
from pairwise.services import allocation, criteria, export, imports
from pairwise.services.longformat import LongFormatError
from pairwise.services.studies import StudyError, create_study
from tests.factories import CheckpointFactory, EvalContextFactory, annotator, make_study, researcher

pytestmark = pytest.mark.django_db

GUIDELINES = (
    "# Judge\n\n- **Empathy**: which reply shows it understood?\n- **Overall**: which is best?\n"
)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _pairs():
    return [(CheckpointFactory(), CheckpointFactory())]


def _versioned_study(**kw):
    study, _, _ = make_study(**kw)
    criteria.version_new_study(study)
    return study


def _judge(study, user, choice="tie"):
    item, _ = allocation.assign(study, user)
    assert item is not None
    judgment, _ = allocation.submit(
        study, user, item.public_id, {c: choice for c in study.criteria}
    )
    return judgment


# --- Creation ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    [
        {"Empathy": "Own words.", "Overall": None},
        [{"name": "Empathy", "definition": "Own words."}, "Overall"],
        [{"name": "Empathy", "definition": "Own words."}, {"name": "Overall"}],
    ],
)
def test_create_study_takes_definitions_as_a_dict_or_a_list(given):
    study = create_study("defined", contexts=[EvalContextFactory()], pairs=_pairs(), criteria=given)
    rows = {c.name: c for c in Criterion.objects.filter(study=study)}
    assert study.criteria == ["Empathy", "Overall"]
    assert rows["Empathy"].definition == "Own words." and rows["Empathy"].version == 1
    # no definition given and no guidelines: the default criterion's
    assert rows["Overall"].definition == DEFAULT_DEFINITIONS["Overall"]
    study.refresh_from_db()
    assert study.criteria_versions == {"Empathy": 1, "Overall": 1}
    assert study.guideline_sha256 == sha("")
    assert GuidelineVersion.objects.get(study=study).sha256 == sha("")


def test_create_study_takes_undefined_criteria_from_the_guidelines_bullets_then_empty():
    study = create_study(
        "bullets",
        contexts=[EvalContextFactory()],
        pairs=_pairs(),
        criteria=["Empathy", "Overall", "Novelty"],
        guidelines=GUIDELINES,
    )
    texts = {c.name: c.definition for c in Criterion.objects.filter(study=study)}
    assert texts == {
        "Empathy": "which reply shows it understood?",
        "Overall": "which is best?",
        "Novelty": "",  # neither written nor a default criterion
    }
    study.refresh_from_db()
    assert study.guideline_sha256 == sha(GUIDELINES)
    assert GuidelineVersion.objects.get(study=study, sha256=sha(GUIDELINES)).text == GUIDELINES


def test_the_default_criteria_get_the_default_definitions():
    study = create_study("plain", contexts=[EvalContextFactory()], pairs=_pairs())
    assert [d["definition"] for d in criteria.definitions(study)] == [
        DEFAULT_DEFINITIONS[n] for n in study.criteria
    ]


@pytest.mark.parametrize(
    "given, words",
    [
        (["A", "A"], "'A' is given twice"),
        ([{"name": ""}], "entry 0 has no name"),
        ([{"name": "A", "definiton": "typo"}], "unknown keys ['definiton']"),
        ({"A": 3}, "expected text"),
        ("Fluency", "expected a list"),
        ({"A": "x" * 2001}, "at most 2000"),
    ],
)
def test_bad_criteria_are_refused_naming_the_field(given, words):
    with pytest.raises(StudyError, match=r"^criteria: ") as exc:
        create_study("bad", contexts=[EvalContextFactory()], pairs=_pairs(), criteria=given)
    assert words in str(exc.value)
    assert not Study.objects.filter(name="bad").exists()


# --- Versions ----------------------------------------------------------------------------------


def test_an_edit_before_any_judgment_keeps_the_version():
    study = _versioned_study(n_contexts=2, k=1, criteria=["Overall"])
    row = criteria.edit_criterion(study, "Overall", "  Which one would you send?  ")
    assert (row.version, row.definition) == (1, "Which one would you send?")
    assert Criterion.objects.filter(study=study).count() == 1
    study.refresh_from_db()
    assert study.criteria_versions == {"Overall": 1}


def test_an_edit_after_judgments_makes_a_version_and_old_judgments_keep_theirs():
    study = _versioned_study(n_contexts=3, k=1, criteria=["Fluency", "Overall"])
    first = _judge(study, annotator(study, username="ann-1"))
    assert first.criteria_versions == {"Fluency": 1, "Overall": 1}

    row = criteria.edit_criterion(study, "Overall", "Which one would you send?")
    assert row.version == 2
    study.refresh_from_db()
    assert study.criteria_versions == {"Fluency": 1, "Overall": 2}
    assert (
        Criterion.objects.get(study=study, name="Overall", version=1).definition
        == (DEFAULT_DEFINITIONS["Overall"])
    )
    # v2 has no judgment yet: a further edit changes it in place
    assert criteria.edit_criterion(study, "Overall", "Send which?").version == 2
    second = _judge(study, annotator(study, username="ann-2"))
    first.refresh_from_db()
    assert first.criteria_versions == {"Fluency": 1, "Overall": 1}
    assert second.criteria_versions == {"Fluency": 1, "Overall": 2}
    # the same text again changes nothing, though v2 has a judgment now
    assert criteria.edit_criterion(study, "Overall", "Send which?").version == 2
    assert Criterion.objects.filter(study=study, name="Overall").count() == 2


def test_editing_an_unknown_criterion_names_it():
    study = _versioned_study(n_contexts=1, criteria=["Overall"])
    with pytest.raises(criteria.CriteriaError, match=r"^criterion: .*'Empathy'"):
        criteria.edit_criterion(study, "Empathy", "x")
    with pytest.raises(criteria.CriteriaError, match=r"^definition: expected text"):
        criteria.edit_criterion(study, "Overall", None)


def test_each_judgment_records_the_guidelines_it_was_made_under():
    study = _versioned_study(n_contexts=3, k=1, guidelines="Old rules.")
    before = _judge(study, annotator(study, username="ann-1"))
    version = criteria.set_guidelines(study, "New rules.")
    assert version.sha256 == sha("New rules.")
    study.refresh_from_db()
    assert (study.guidelines, study.guideline_sha256) == ("New rules.", sha("New rules."))
    after = _judge(study, annotator(study, username="ann-2"))
    before.refresh_from_db()
    assert before.guideline_sha256 == sha("Old rules.")
    assert after.guideline_sha256 == sha("New rules.")
    # going back to the old text finds its version again
    criteria.set_guidelines(study, "Old rules.")
    assert GuidelineVersion.objects.filter(study=study).count() == 2


def test_simulated_judgments_record_the_versions():
    from pairwise.services.simulate import simulate

    study = _versioned_study(n_contexts=2, k=2, criteria=["Overall"])
    criteria.edit_criterion(study, "Overall", "Before any judgment: still v1")
    assert simulate(study, annotators=2, seed=1) == 4
    recorded = set(
        (j.guideline_sha256, j.criteria_versions["Overall"])
        for j in Judgment.objects.filter(study=study)
    )
    assert recorded == {(study.guideline_sha256, 1)}


# --- What annotators see -------------------------------------------------------------------------


def test_the_annotate_and_guidelines_pages_show_each_definition():
    study = _versioned_study(n_contexts=1, k=1, criteria=["Fluency", "Empathy"])
    criteria.edit_criterion(study, "Empathy", "Does it show it <understood>?")
    client = Client()
    client.force_login(annotator(study, username="ann-1"))
    page = client.get(f"/study/{study.pk}/annotate/").content.decode()
    assert DEFAULT_DEFINITIONS["Fluency"] in page
    assert "Does it show it &lt;understood&gt;?" in page  # escaped
    assert 'id="definition-1"' in page and 'aria-describedby="definition-1"' in page
    guide = client.get(f"/study/{study.pk}/guidelines/").content.decode()
    assert "<dt>Empathy</dt><dd>Does it show it &lt;understood&gt;?</dd>" in guide


def test_the_next_item_api_lists_the_definitions_without_a_query_per_request():
    study = _versioned_study(n_contexts=3, k=1, criteria=["Fluency", "Overall"])
    criteria.edit_criterion(study, "Overall", "Send which?")
    client = APIClient()
    client.force_authenticate(annotator(study, username="ann-1"))
    other = annotator(study, username="ann-2")
    url = f"/api/annotator/studies/{study.pk}/next/"
    body = client.get(url).json()
    assert body["criteria"] == [
        {"name": "Fluency", "definition": DEFAULT_DEFINITIONS["Fluency"]},
        {"name": "Overall", "definition": "Send which?"},
    ]
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url).json()["criteria"] == body["criteria"]
    assert not [q for q in queries if "criterion" in q["sql"].lower()]
    # a new version changes the cache key: the next request reads the new text
    _judge(study, other)
    criteria.edit_criterion(study, "Overall", "Which would you send?")
    assert client.get(url).json()["criteria"][1]["definition"] == "Which would you send?"


# --- Researchers: API, page, command -------------------------------------------------------------


def test_criteria_and_guidelines_through_the_api():
    study = _versioned_study(n_contexts=2, k=1, criteria=["Overall"])
    client = APIClient()
    client.force_authenticate(researcher(study, username="res-1"))
    base = f"/api/studies/{study.pk}"
    _judge(study, annotator(study, username="ann-1"))
    r = client.post(f"{base}/criteria/", {"name": "Overall", "definition": "Send which?"})
    assert r.status_code == 200, r.json()
    assert [(c["version"], c["current"], c["judgments"]) for c in r.json()] == [
        (1, False, 1),
        (2, True, 0),
    ]
    assert client.get(f"{base}/criteria/").json() == r.json()
    bad = client.post(f"{base}/criteria/", {"name": "Nope", "definition": "x"})
    assert bad.status_code == 400 and "criterion" in bad.json()
    r = client.post(f"{base}/guidelines/", {"text": "New rules."})
    assert r.status_code == 200
    assert [g["current"] for g in r.json()] == [False, True]
    assert r.json()[1]["sha256"] == sha("New rules.")
    assert client.post(f"{base}/guidelines/", {}).status_code == 400
    # annotators cannot edit
    ann = APIClient()
    ann.force_authenticate(annotator(study, username="ann-2"))
    assert ann.post(f"{base}/criteria/", {"name": "Overall", "definition": "x"}).status_code == 403


def test_the_api_creates_a_study_with_definitions():
    a, b = CheckpointFactory(), CheckpointFactory()
    client = APIClient()
    client.force_authenticate(researcher(username="res-1"))
    body = {
        "name": "api-defined",
        "contexts": [EvalContextFactory().pk],
        "comparisons": [[str(a.pk), str(b.pk)]],
        "criteria": [{"name": "Empathy", "definition": "Own words."}, "Overall"],
    }
    r = client.post("/api/studies/", body, format="json")
    assert r.status_code == 201, r.json()
    study = Study.objects.get(name="api-defined")
    assert criteria.definitions(study)[0] == {"name": "Empathy", "definition": "Own words."}
    body = {**body, "name": "api-bad", "criteria": [{"name": "A"}, {"name": "A"}]}
    bad = client.post("/api/studies/", body, format="json")
    assert bad.status_code == 400 and "given twice" in bad.json()["criteria"][0]


def test_the_study_page_edits_criteria_and_guidelines():
    study = _versioned_study(n_contexts=1, criteria=["Overall"])
    client = Client()
    client.force_login(researcher(study, username="res-1"))
    url = f"/studies/{study.pk}/criteria/"
    r = client.post(url, {"action": "criterion", "name": "Overall", "definition": "Send which?"})
    assert r.status_code == 302 and r["Location"].endswith("#criteria")
    page = client.get(f"/studies/{study.pk}/").content.decode()
    assert 'id="criteria-table"' in page and "Send which?" in page
    r = client.post(url, {"action": "guidelines", "guidelines": "Be kind."})
    assert r.status_code == 302
    study.refresh_from_db()
    assert study.guideline_sha256 == sha("Be kind.")
    bad = client.post(url, {"action": "criterion", "name": "Nope", "definition": "x"})
    assert bad.status_code == 400 and "criterion: study" in bad.content.decode()
    # annotators do not reach it
    other = Client()
    other.force_login(annotator(study, username="ann-1"))
    assert other.post(url, {"action": "guidelines", "guidelines": "x"}).status_code == 403


def test_the_edit_criteria_command(tmp_path):
    study = _versioned_study(n_contexts=2, k=1, criteria=["Overall"])
    _judge(study, annotator(study, username="ann-1"))
    out = io.StringIO()
    call_command(
        "edit_criteria",
        str(study.pk),
        "--criterion",
        "Overall",
        "--definition",
        "Send?",
        stdout=out,
    )
    assert "Overall is now v2" in out.getvalue()
    assert "* Overall v2 (0 judgments): Send?" in out.getvalue()
    rules = tmp_path / "rules.md"
    rules.write_text("Rules from a file.")
    out = io.StringIO()
    call_command("edit_criteria", study.name, "--guidelines", str(rules), stdout=out)
    study.refresh_from_db()
    assert study.guidelines == "Rules from a file." and sha("Rules from a file.") in out.getvalue()
    with pytest.raises(CommandError, match="criterion: .*'Nope'"):
        call_command("edit_criteria", str(study.pk), "--criterion", "Nope", "--definition", "x")
    with pytest.raises(CommandError, match="--criterion and --definition"):
        call_command("edit_criteria", str(study.pk), "--criterion", "Overall")
    with pytest.raises(CommandError, match="--guidelines: cannot read"):
        call_command("edit_criteria", str(study.pk), "--guidelines", str(tmp_path / "none.md"))


# --- Export and import ---------------------------------------------------------------------------


def test_the_export_names_the_versions_and_an_import_keeps_them(tmp_path):
    study = _versioned_study(n_contexts=2, k=1, criteria=["Overall"], guidelines="Rules.")
    _judge(study, annotator(study, username="ann-1"))
    criteria.edit_criterion(study, "Overall", "Send which?")
    _judge(study, annotator(study, username="ann-2"))
    df = export.long_dataframe(study)
    assert list(df.columns[-2:]) == ["guideline_sha256", "criterion_version"]
    assert set(df["guideline_sha256"]) == {sha("Rules.")}
    assert sorted(df["criterion_version"].tolist()) == [1, 2]

    out = tmp_path / "out"
    written = export.export_study(study, "csv", out)
    assert {p.name for p in written} >= {"criteria.csv", "guidelines.csv", "annotators.csv"}
    text = (out / "judgments.csv").read_text().replace(study.name, "copy")
    copy = tmp_path / "copy.csv"
    copy.write_text(text)
    imports.import_judgments(copy)
    imported = Study.objects.get(name="copy")
    got = sorted(j.criteria_versions["Overall"] for j in Judgment.objects.filter(study=imported))
    assert got == [1, 2]
    assert {j.guideline_sha256 for j in Judgment.objects.filter(study=imported)} == {sha("Rules.")}


def test_imported_rows_without_version_columns_get_the_current_versions(tmp_path):
    study = _versioned_study(n_contexts=1, k=1, criteria=["Overall"])
    _judge(study, annotator(study, username="ann-1"))
    df = export.long_dataframe(study).drop(columns=["guideline_sha256", "criterion_version"])
    df["study"] = "no-versions"
    path = tmp_path / "plain.csv"
    df.to_csv(path, index=False)
    imports.import_judgments(path)
    imported = Study.objects.get(name="no-versions")
    judgment = Judgment.objects.get(study=imported)
    assert judgment.criteria_versions == imported.criteria_versions == {"Overall": 1}
    assert judgment.guideline_sha256 == imported.guideline_sha256 == sha("")


@pytest.mark.parametrize(
    "column, value", [("criterion_version", "two"), ("guideline_sha256", "not-a-hash")]
)
def test_a_bad_version_in_an_import_names_the_line_and_column(tmp_path, column, value):
    study = _versioned_study(n_contexts=1, k=1, criteria=["Overall"])
    _judge(study, annotator(study, username="ann-1"))
    df = export.long_dataframe(study)
    df["study"], df[column] = "bad-import", value
    path = tmp_path / "bad.csv"
    df.to_csv(path, index=False)
    with pytest.raises(LongFormatError, match=rf"line 2, field '{column}'"):
        imports.import_judgments(path)
    assert not Study.objects.filter(name="bad-import").exists()


# --- The migration -------------------------------------------------------------------------------


def test_the_migration_gives_existing_studies_version_1():
    """`version_studies` (0007) over a study made before criteria were records."""
    migration = importlib.import_module("pairwise.migrations.0007_publishable")
    study, _, _ = make_study(
        n_contexts=1, k=1, criteria=["Empathy", "Fluency", "Novelty"], guidelines=GUIDELINES
    )
    _judge(study, annotator(study, username="ann-1"))
    assert not Criterion.objects.filter(study=study).exists()
    migration.version_studies(django_apps, None)
    texts = {c.name: (c.version, c.definition) for c in Criterion.objects.filter(study=study)}
    assert texts == {
        "Empathy": (1, "which reply shows it understood?"),
        "Fluency": (1, DEFAULT_DEFINITIONS["Fluency"]),
        "Novelty": (1, ""),
    }
    study.refresh_from_db()
    assert study.criteria_versions == {"Empathy": 1, "Fluency": 1, "Novelty": 1}
    judgment = Judgment.objects.get(study=study)
    assert judgment.guideline_sha256 == sha(GUIDELINES) == study.guideline_sha256
    assert judgment.criteria_versions == study.criteria_versions


def test_an_admin_edit_of_the_guidelines_or_criteria_gets_versions():
    from tests.factories import UserFactory

    study = _versioned_study(n_contexts=1, criteria=["Overall"], guidelines="Old.")
    study.guidelines, study.criteria = "New.", ["Overall", "Fluency"]
    study.save()  # what the admin's form does, before its save_model hook
    criteria.sync_study(study)
    study.refresh_from_db()
    assert study.guideline_sha256 == sha("New.")
    assert study.criteria_versions == {"Overall": 1, "Fluency": 1}
    assert criteria.definitions(study)[1]["definition"] == DEFAULT_DEFINITIONS["Fluency"]
    # the admin form leaves the hash and versions to the service
    boss = UserFactory(username="boss", is_staff=True, is_superuser=True)
    client = Client()
    client.force_login(boss)
    form = client.get(f"/admin/pairwise/study/{study.pk}/change/").context["adminform"].form
    assert "guideline_sha256" not in form.fields  # not editable: set by the service
    api = APIClient()
    api.force_authenticate(researcher(study, username="res-1"))
    body = api.get(f"/api/studies/{study.pk}/").json()
    assert body["guideline_sha256"] == sha("New.")
    assert body["criteria_versions"] == {"Overall": 1, "Fluency": 1}


def test_criterion_and_guideline_edits_are_in_the_audit_log(tmp_path):
    from auditlog.models import LogEntry

    study = _versioned_study(n_contexts=2, k=1, criteria=["Overall"])
    boss = researcher(study, username="res-audit")
    client = APIClient()
    client.force_authenticate(boss)
    base = f"/api/studies/{study.pk}"
    client.post(f"{base}/criteria/", {"name": "Overall", "definition": "Send which?"})
    client.post(f"{base}/criteria/", {"name": "Overall", "definition": "Send which?"})  # same
    client.post(f"{base}/guidelines/", {"text": "New rules."})
    rules = tmp_path / "rules.md"
    rules.write_text("Command rules.")
    call_command("edit_criteria", study.name, "--guidelines", str(rules), stdout=io.StringIO())

    def rows(action):
        return list(LogEntry.objects.filter(additional_data__action=action).order_by("pk"))

    (edit,) = rows("edit_criterion")  # editing to the same text records nothing
    assert edit.actor == boss and edit.object_pk == str(study.pk)
    assert edit.additional_data["criterion"] == "Overall"
    assert edit.additional_data["version"] == 1  # no judgment yet: edited in place
    assert edit.additional_data["definition"] == "Send which?"
    by_api, by_command = rows("set_guidelines")
    assert by_api.actor == boss and by_api.additional_data["sha256"] == sha("New rules.")
    assert by_command.actor is None
    assert by_command.additional_data["command"] == "edit_criteria"
    assert by_command.additional_data["sha256"] == sha("Command rules.")
