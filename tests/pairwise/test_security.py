"""Safe defaults and security headers (#17 items 1 and 7).

DEBUG off and a generated SECRET_KEY with nothing set; `check --deploy` warns only about the
HTTPS settings; static files with DEBUG off; plain error pages (JSON under /api/); a
Content-Security-Policy with no inline script, style or event handler on every page.
"""

from __future__ import annotations

import base64
import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

from pairwise.models import Study, StudyMember
from tests.factories import UserFactory, annotator, make_study, researcher

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = REPO / "pairwise" / "templates"

SCRIPT_TAG = re.compile(r"<script\b([^>]*)>", re.IGNORECASE)
EVENT_HANDLER = re.compile(r"<[a-zA-Z][^>]*?\son[a-z]+\s*=", re.IGNORECASE | re.DOTALL)
STYLE_ATTRIBUTE = re.compile(r"<[a-zA-Z][^>]*?\sstyle\s*=", re.IGNORECASE | re.DOTALL)
HTTPS_WARNINGS = {"security.W004", "security.W008", "security.W012", "security.W016"}


def _clean_env(var_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh machine: nothing of ours set but a private var directory."""
    env = {k: os.environ[k] for k in ("PATH", "HOME", "LANG") if k in os.environ}
    return {**env, "EVALSITE_VAR_DIR": str(var_dir), "HF_HUB_OFFLINE": "1", **extra}


def _settings_in_subprocesses(var_dir: Path, n: int, **extra: str) -> list[str]:
    """Start n processes at once that load the settings; each prints DEBUG and SECRET_KEY."""
    code = "import evalsite.settings as s; print(s.DEBUG, s.SECRET_KEY)"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=REPO,
            env=_clean_env(var_dir, **extra),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
        outputs.append(out.strip())
    return outputs


# --- Safe defaults --------------------------------------------------------------------------


def test_debug_is_off_and_one_secret_key_is_generated_once_into_the_var_directory(tmp_path):
    outputs = _settings_in_subprocesses(tmp_path, 6)  # serve's processes start at once
    assert len(set(outputs)) == 1, outputs
    debug, key = outputs[0].split(" ", 1)
    assert debug == "False"
    key_file = tmp_path / "secret_key"
    assert key_file.read_text().strip() == key and len(key) >= 50
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".secret_key")]
    # the next start reads the same key; an explicit SECRET_KEY wins over the file
    assert _settings_in_subprocesses(tmp_path, 1) == outputs[:1]
    explicit = "x" * 60
    assert _settings_in_subprocesses(tmp_path, 1, SECRET_KEY=explicit, DEBUG="1") == [
        f"True {explicit}"
    ]
    assert "dev-only" not in (REPO / "evalsite" / "settings.py").read_text()


@pytest.mark.parametrize("variable", ["DEBUG", "HTTPS"])
def test_a_malformed_flag_stops_start_up_with_one_line_naming_it(tmp_path, variable):
    result = subprocess.run(
        [sys.executable, "-c", "import evalsite.settings"],
        cwd=REPO,
        env=_clean_env(tmp_path, **{variable: "maybe"}),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"evalsite: configuration error in {variable}: 'maybe' is not a yes/no value; "
        "expected 1 or 0"
    ]


def _check_deploy(var_dir: Path, **extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy"],
        cwd=REPO,
        env=_clean_env(var_dir, **extra),
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_check_deploy_in_the_default_configuration_warns_only_about_https(tmp_path):
    result = _check_deploy(tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert set(re.findall(r"\(([\w.]+\.[EW]\d+)\)", output)) == HTTPS_WARNINGS, output


def test_https_turns_on_the_secure_settings_for_a_tls_proxy(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=REPO,
        env=_clean_env(tmp_path, HTTPS="1", ALLOWED_HOSTS="eval.example.org"),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_https_requests_through_the_proxy_are_secure_and_plain_http_is_redirected(settings):
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31536000
    client = Client()
    plain = client.get("/accounts/login/")
    assert plain.status_code == 301 and plain["Location"].startswith("https://")
    proxied = client.get("/accounts/login/", headers={"x-forwarded-proto": "https"})
    assert proxied.status_code == 200
    assert proxied["Strict-Transport-Security"].startswith("max-age=31536000")
    assert client.get("/healthz").status_code in (200, 503)  # probes come over plain http


def test_static_files_are_served_with_debug_off(settings):
    assert not settings.DEBUG
    client = Client()
    swagger = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    for path, content_type, needle in [
        ("/static/pairwise/site.css", "text/css", b"body"),
        ("/static/pairwise/annotate.js", "text/javascript", b"judge-form"),
        ("/static/pairwise/autosubmit.js", "text/javascript", b"data-autosubmit"),
        (swagger, "text/javascript", b"SwaggerUIBundle"),
    ]:
        r = client.get(path)
        assert r.status_code == 200, path
        assert r["Content-Type"].startswith(content_type), (path, r["Content-Type"])
        assert needle in b"".join(r.streaming_content), path
        assert r["X-Content-Type-Options"] == "nosniff"
    assert client.get("/static/pairwise/missing.css").status_code == 404


# --- Error pages ----------------------------------------------------------------------------


def _member(user, study: Study, role: str = "annotator"):
    StudyMember.objects.get_or_create(study=study, user=user, defaults={"role": role})
    return user


def _plain_error_page(r, status: int, heading: str) -> str:
    body = r.content.decode()
    assert r.status_code == status
    assert r["Content-Type"].startswith("text/html")
    assert heading in body and 'id="error"' in body
    for leak in ("Traceback", "Exception", "settings", "Django", "DEBUG"):
        assert leak not in body, leak
    return body


@pytest.mark.django_db
def test_annotators_see_plain_404_403_and_500_pages(monkeypatch):
    study, _, _ = make_study(n_contexts=1)
    client = Client()
    client.force_login(_member(annotator(username="err-ann"), study))

    _plain_error_page(client.get("/no/such/page/"), 404, "Page not found")
    _plain_error_page(client.get(f"/study/{study.pk + 1000}/annotate/"), 404, "Page not found")
    body = _plain_error_page(client.get("/studies/"), 403, "Not allowed")
    assert "Only researchers and admins" in body  # the view's own, user-facing reason

    from pairwise.services import allocation

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail /srv/db")

    monkeypatch.setattr(allocation, "progress", broken)
    client.raise_request_exception = False
    body = _plain_error_page(client.get("/"), 500, "Something went wrong")
    assert "secret internal detail" not in body and "RuntimeError" not in body


@pytest.mark.django_db
def test_an_expired_form_gets_a_plain_403_page():
    client = Client(enforce_csrf_checks=True)
    client.force_login(annotator(username="csrf-ann"))
    r = client.post("/accounts/logout/")
    _plain_error_page(r, 403, "This page has expired")


@pytest.mark.django_db
def test_the_api_keeps_json_errors(monkeypatch):
    study, _, _ = make_study(n_contexts=1)
    client = Client()
    client.force_login(_member(annotator(username="api-err"), study))

    r = client.get("/api/no/such/endpoint/")
    assert r.status_code == 404 and r.json() == {"detail": "Not found."}
    r = client.get(f"/api/annotator/studies/{study.pk + 1000}/progress/")
    assert r.status_code == 404 and set(r.json()) == {"detail"}

    from pairwise.services import allocation

    def broken(*args, **kwargs):
        raise RuntimeError("secret internal detail /srv/db")

    monkeypatch.setattr(allocation, "progress", broken)
    client.raise_request_exception = False
    r = client.get(f"/api/annotator/studies/{study.pk}/progress/")
    assert r.status_code == 500
    assert r["Content-Type"] == "application/json"
    assert r.json() == {"detail": "Server error."}


# --- Content-Security-Policy and headers ----------------------------------------------------


def test_templates_have_no_inline_script_style_or_event_handler():
    templates = sorted(TEMPLATES.rglob("*.html"))
    assert len(templates) >= 10
    for path in templates:
        text = path.read_text()
        name = path.relative_to(REPO)
        for attrs in SCRIPT_TAG.findall(text):
            assert "src=" in attrs, f"{name}: inline <script{attrs}>"
        assert not EVENT_HANDLER.search(text), f"{name}: inline event handler"
        assert not STYLE_ATTRIBUTE.search(text), f"{name}: style= attribute"
        assert "<style" not in text.lower(), f"{name}: <style> element"


def _assert_page_is_under_policy(r, url: str) -> None:
    csp = r.get("Content-Security-Policy", "")
    directives = dict(d.strip().split(" ", 1) for d in csp.split(";") if d.strip())
    assert directives.get("default-src") == "'self'", (url, csp)
    assert directives.get("script-src") == "'self'", (url, csp)
    assert directives.get("style-src") == "'self'", (url, csp)
    assert directives.get("object-src") == "'none'", (url, csp)
    assert directives.get("base-uri") == "'self'", (url, csp)
    assert directives.get("frame-ancestors") == "'none'", (url, csp)
    assert directives.get("form-action") == "'self'", (url, csp)
    assert "unsafe" not in csp, (url, csp)
    assert r["X-Content-Type-Options"] == "nosniff", url
    assert r["Referrer-Policy"] == "same-origin", url
    body = r.content.decode()
    for attrs in SCRIPT_TAG.findall(body):
        assert "src=" in attrs, f"{url}: inline <script{attrs}>"
    assert not EVENT_HANDLER.search(body), f"{url}: inline event handler"
    assert not STYLE_ATTRIBUTE.search(body), f"{url}: style= attribute"
    assert "<style" not in body.lower(), f"{url}: <style> element"


def _judge_all(study: Study, client: Client) -> None:
    """Judge every item the annotate page hands out, through the page."""
    while True:
        page = client.get(f"/study/{study.pk}/annotate/")
        if "item" not in (page.context or {}):
            return
        choices = {f"choice-{i}": "left" for i in range(len(study.criteria))}
        client.post(f"/study/{study.pk}/annotate/", {"item": page.context["item"]["id"], **choices})


@pytest.mark.django_db
def test_every_page_for_every_role_carries_the_policy_and_no_inline_code():
    study, _, _ = make_study(n_contexts=2, k=2, guidelines="# Be kind\n\nRead **both**.")
    closed, _, _ = make_study(n_contexts=1, status=Study.Status.CLOSED)
    pages: list[tuple[Client, str, int]] = []

    anonymous = Client()
    pages.append((anonymous, "/accounts/login/", 200))

    annotators = []
    for i in range(2):
        c = Client()
        c.force_login(_member(_member(annotator(username=f"csp-ann{i}"), study), closed))
        annotators.append(c)
    ann = annotators[0]
    pages += [
        (ann, "/", 200),
        (ann, f"/study/{study.pk}/guidelines/", 200),
        (ann, f"/study/{study.pk}/annotate/", 200),  # an item to judge
        (ann, f"/study/{closed.pk}/annotate/", 409),  # not open
        (ann, "/studies/", 403),
        (ann, "/no/such/page/", 404),
    ]
    for client, url, status in pages:
        r = client.get(url)
        assert r.status_code == status, url
        _assert_page_is_under_policy(r, url)

    for c in annotators:
        _judge_all(study, c)
    done = ann.get(f"/study/{study.pk}/annotate/")
    assert done.status_code == 200 and "All done" in done.content.decode()
    _assert_page_is_under_policy(done, "done page")

    res = Client()
    res.force_login(_member(researcher(username="csp-res"), study, role="owner"))
    admin = Client()
    admin.force_login(UserFactory(username="csp-admin", is_staff=True, is_superuser=True))
    for client, url in [
        (res, "/studies/"),
        (res, f"/studies/{study.pk}/"),
        (res, f"/studies/{study.pk}/results/"),
        (res, "/api/docs/"),
        (admin, "/admin/"),
        (admin, "/admin/pairwise/study/"),
        (admin, f"/admin/pairwise/study/{study.pk}/change/"),
        (admin, "/admin/auth/user/"),
    ]:
        r = client.get(url)
        assert r.status_code == 200, url
        _assert_page_is_under_policy(r, url)

    # the results plots are images (data: URIs), so matplotlib's style attributes stay inside them
    results = res.get(f"/studies/{study.pk}/results/").content.decode()
    uris = re.findall(r'<img src="data:image/svg\+xml;base64,([^"]+)"', results)
    assert len(uris) == 2
    assert all(base64.b64decode(u).startswith(b"<svg") for u in uris)
    assert "data-autosubmit" in results and "pairwise/autosubmit.js" in results


@pytest.mark.django_db
def test_api_docs_load_their_set_up_script_as_a_file():
    client = Client()
    client.force_login(researcher(username="docs-res"))
    page = client.get("/api/docs/").content.decode()
    srcs = [re.search(r'src="([^"]+)"', attrs)[1] for attrs in SCRIPT_TAG.findall(page)]
    assert len(srcs) == 3 and srcs[-1].startswith("/api/docs/?")
    script = client.get(srcs[-1].replace("&amp;", "&"))
    assert script.status_code == 200
    assert script["Content-Type"].startswith("application/javascript")
    text = script.content.decode()
    assert "SwaggerUIBundle" in text and "/api/schema/" in text
