"""Login throttling and the password life cycle, through the login page, the API and the admin.

Lockouts: a username or an address with LOGIN_FAILURE_LIMIT (5) failures within
LOGIN_LOCKOUT_MINUTES (15) is refused, the right password included, with a 429 page. Bad API
tokens are failed logins of their address. Invited accounts set their own password first.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from axes.models import AccessAttempt
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db.models import F
from django.test import Client
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from pairwise.models import Profile
from tests.factories import UserFactory, annotator

pytestmark = pytest.mark.django_db

PASSWORD = "pw-123456"
ANN_STUDIES = "/api/annotator/studies/"


def _login(client: Client, username: str, password: str, ip: str = "127.0.0.1", **meta):
    return client.post(
        "/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip, **meta
    )


def _logged_in(response) -> bool:
    return response.status_code == 302 and response.url == "/"


def _fail_logins(client: Client, username: str, n: int, ip: str = "127.0.0.1", **meta) -> list:
    return [_login(client, username, "wrong-guess", ip, **meta) for _ in range(n)]


def _age_attempts(minutes: int) -> None:
    """As if the failed logins happened `minutes` earlier."""
    AccessAttempt.objects.update(attempt_time=F("attempt_time") - timedelta(minutes=minutes))


def _token_client(user, ip: str = "127.0.0.1") -> APIClient:
    client = APIClient(REMOTE_ADDR=ip)
    client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


# --- lockouts on the login page ---------------------------------------------------------------


def test_five_wrong_passwords_lock_the_account_and_refuse_the_right_one(client):
    annotator(username="guessed")
    first = _fail_logins(client, "guessed", 4)
    assert all(r.status_code == 200 for r in first)
    assert "didn&#x27;t match" in first[0].content.decode()
    fifth = _login(client, "guessed", "wrong-guess")
    assert fifth.status_code == 429
    page = fifth.content.decode()
    assert "Too many failed logins: try again in 15 minutes" in page
    assert "ask an admin to unlock your account" in page
    assert 890 <= int(fifth["Retry-After"]) <= 900

    right = _login(client, "guessed", PASSWORD)
    assert right.status_code == 429 and "Too many failed logins" in right.content.decode()
    assert client.get("/").status_code == 302  # not logged in: sent to the login page


def test_the_lockout_ends_after_the_cool_off_and_the_page_counts_down(client):
    annotator(username="waits")
    _fail_logins(client, "waits", 5)
    _age_attempts(10)
    r = _login(client, "waits", PASSWORD)
    assert r.status_code == 429 and "try again in 5 minutes" in r.content.decode()
    assert 290 <= int(r["Retry-After"]) <= 300
    # a refused attempt during the lockout did not extend it
    _age_attempts(5)
    assert _logged_in(_login(client, "waits", PASSWORD))


def test_a_guessed_account_locks_whatever_the_addresses(client):
    """Per username: guesses spread over five addresses lock the account everywhere."""
    annotator(username="spread")
    for i in range(5):
        _login(client, "spread", "wrong-guess", ip=f"10.1.0.{i}")
    assert _login(client, "spread", PASSWORD, ip="10.1.0.99").status_code == 429


def test_one_address_guessing_many_accounts_locks_that_address_only(client):
    """Per address: password spraying (one guess each on many accounts) locks the address;
    the same accounts log in from elsewhere."""
    for i in range(5):
        annotator(username=f"sprayed{i}")
        _login(client, f"sprayed{i}", "wrong-guess", ip="10.2.0.1")
    assert _login(client, "sprayed0", PASSWORD, ip="10.2.0.1").status_code == 429
    assert _logged_in(_login(Client(), "sprayed0", PASSWORD, ip="10.2.0.2"))


def test_lockout_by_the_pair_only_when_configured(client, settings):
    settings.LOGIN_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
    annotator(username="paired")
    _fail_logins(client, "paired", 5, ip="10.3.0.1")
    assert _login(client, "paired", PASSWORD, ip="10.3.0.1").status_code == 429
    assert _logged_in(_login(Client(), "paired", PASSWORD, ip="10.3.0.2"))


def test_the_client_address_comes_from_the_proxy_header_only_when_configured(client, settings):
    annotator(username="proxied")
    # default: X-Forwarded-For is the client's to forge, and ignored
    _login(client, "proxied", "wrong-guess", ip="10.4.0.1", HTTP_X_FORWARDED_FOR="1.2.3.4")
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"10.4.0.1"}
    AccessAttempt.objects.all().delete()

    settings.CLIENT_IP_META_KEY = "HTTP_X_FORWARDED_FOR"
    settings.CLIENT_IP_PROXY_COUNT = 1
    for i in range(5):  # the forged left part changes; what our proxy appended does not
        _login(
            client,
            f"other{i}",
            "wrong-guess",
            ip="10.0.0.254",
            HTTP_X_FORWARDED_FOR=f"9.9.9.{i}, 203.0.113.7",
        )
    assert set(AccessAttempt.objects.values_list("ip_address", flat=True)) == {"203.0.113.7"}
    locked = _login(client, "proxied", PASSWORD, "10.0.0.254", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert locked.status_code == 429
    other = _login(client, "proxied", PASSWORD, "10.0.0.254", HTTP_X_FORWARDED_FOR="203.0.113.8")
    assert _logged_in(other)


def test_an_admin_unlocks_a_locked_account(client):
    user = annotator(username="locked")
    _fail_logins(client, "locked", 5, ip="10.5.0.1")
    assert _login(client, "locked", PASSWORD, ip="10.5.0.1").status_code == 429

    boss = Client()
    boss.force_login(UserFactory(username="boss", is_staff=True, is_superuser=True))
    r = boss.post(
        "/admin/auth/user/",
        {"action": "unlock_login", "_selected_action": [user.pk]},
        follow=True,
    )
    assert "Unlocked locked (1 failed-login records removed)" in r.content.decode()
    assert _logged_in(_login(client, "locked", PASSWORD, ip="10.5.0.1"))


# --- the API ----------------------------------------------------------------------------------


def _rates(settings, **rates) -> None:
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "600/minute", "anon": "60/minute", **rates},
    }


def test_the_api_throttles_each_account_with_retry_after(settings):
    _rates(settings, user="3/minute")
    client = APIClient()
    client.force_authenticate(annotator(username="busy"))
    assert [client.get(ANN_STUDIES).status_code for _ in range(3)] == [200, 200, 200]
    r = client.get(ANN_STUDIES)
    assert r.status_code == 429 and "throttled" in r.json()["detail"]
    assert 1 <= int(r["Retry-After"]) <= 60
    other = APIClient()
    other.force_authenticate(annotator(username="calm"))
    assert other.get(ANN_STUDIES).status_code == 200  # per account


def test_the_api_throttles_requests_without_credentials_per_address(settings):
    _rates(settings, anon="2/minute")
    anonymous = APIClient(REMOTE_ADDR="10.6.0.1")
    assert [anonymous.get(ANN_STUDIES).status_code for _ in range(2)] == [401, 401]
    r = anonymous.get(ANN_STUDIES)
    assert r.status_code == 429 and "Too many requests" in r.json()["detail"]
    assert 1 <= int(r["Retry-After"]) <= 60
    assert APIClient(REMOTE_ADDR="10.6.0.2").get(ANN_STUDIES).status_code == 401


def test_bad_tokens_are_failed_logins_that_lock_their_address(client):
    guesser = APIClient(REMOTE_ADDR="10.7.0.1")
    guesser.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef0123456789abcdef01234567")
    assert [guesser.get(ANN_STUDIES).status_code for _ in range(4)] == [401] * 4
    fifth = guesser.get(ANN_STUDIES)
    assert fifth.status_code == 429 and "Too many failed logins" in fifth.json()["detail"]
    sixth = guesser.get(ANN_STUDIES)
    assert sixth.status_code == 429 and 890 <= int(sixth["Retry-After"]) <= 900
    # the address is locked on the login page too; a real token from it still works
    annotator(username="same-office")
    assert _login(client, "same-office", PASSWORD, ip="10.7.0.1").status_code == 429
    assert (
        _token_client(annotator(username="tok-ok"), "10.7.0.1").get(ANN_STUDIES).status_code == 200
    )
    elsewhere = APIClient(REMOTE_ADDR="10.7.0.2")
    elsewhere.credentials(HTTP_AUTHORIZATION="Token nope")
    assert elsewhere.get(ANN_STUDIES).status_code == 401


def test_tokens_expire_after_api_token_days(settings):
    settings.API_TOKEN_DAYS = 90
    user = annotator(username="old-token")
    client = _token_client(user)
    assert client.get(ANN_STUDIES).status_code == 200
    Token.objects.filter(user=user).update(created=timezone.now() - timedelta(days=91))
    r = client.get(ANN_STUDIES)
    assert r.status_code == 401 and "Token expired" in r.json()["detail"]
    assert AccessAttempt.objects.count() == 0  # a real token, not a guess
    settings.API_TOKEN_DAYS = 0
    assert client.get(ANN_STUDIES).status_code == 200


def test_admins_revoke_api_tokens_from_users_and_tokens(client):
    boss = Client()
    boss.force_login(UserFactory(username="root", is_staff=True, is_superuser=True))
    ann, other = annotator(username="revoked"), annotator(username="revoked2")
    api, api2 = _token_client(ann), _token_client(other)
    assert api.get(ANN_STUDIES).status_code == 200

    r = boss.post(
        "/admin/auth/user/",
        {"action": "revoke_api_token", "_selected_action": [ann.pk]},
        follow=True,
    )
    assert "Revoked 1 API token." in r.content.decode()
    r = api.get(ANN_STUDIES)
    assert r.status_code == 401 and r.json()["detail"] == "Invalid token."
    assert api2.get(ANN_STUDIES).status_code == 200

    key = Token.objects.get(user=other).key
    r = boss.post(
        "/admin/authtoken/tokenproxy/",
        {"action": "revoke", "_selected_action": [key]},
        follow=True,
    )
    assert "Revoked 1 API token." in r.content.decode()
    assert api2.get(ANN_STUDIES).status_code == 401


# --- one-time passwords -----------------------------------------------------------------------


def _invite(capsys, *args) -> str:
    call_command("invite_annotators", *args)
    return capsys.readouterr().out.strip().splitlines()[-1].split("\t")[2]


def test_invite_expires_validates_days():
    for bad in ("0", "-3"):
        with pytest.raises(CommandError, match="--expires: expected a number of days > 0"):
            call_command("invite_annotators", "nobody", "--expires", bad)
    assert not get_user_model().objects.filter(username="nobody").exists()


def test_an_expired_one_time_password_is_refused_with_a_clear_message(capsys, client):
    password = _invite(capsys, "late", "--expires", "2")
    profile = Profile.objects.get(user__username="late")
    assert profile.must_change_password
    expected = timezone.now() + timedelta(days=2)
    assert abs((profile.password_expires_at - expected).total_seconds()) < 60
    assert _logged_in(_login(Client(), "late", password))  # within the two days

    Profile.objects.filter(pk=profile.pk).update(password_expires_at=timezone.now())
    r = _login(client, "late", password)
    assert r.status_code == 200
    assert "Your one-time password expired on" in r.content.decode()
    assert "Ask an admin for a new one" in r.content.decode()

    new_password = _invite(capsys, "late", "--reset")  # a new invitation, with no expiry
    assert Profile.objects.get(pk=profile.pk).password_expires_at is None
    assert _logged_in(_login(client, "late", new_password))


def test_invited_accounts_set_their_own_password_before_anything_else(capsys, client):
    password = _invite(capsys, "newbie")
    token_client = _token_client(get_user_model().objects.get(username="newbie"))
    assert _logged_in(_login(client, "newbie", password))

    r = client.get("/")
    assert r.status_code == 302 and r.url == "/accounts/password/"
    assert client.get("/studies/").url == "/accounts/password/"
    r = client.get(ANN_STUDIES)
    assert r.status_code == 403 and "/accounts/password/" in r.json()["detail"]
    r = token_client.get(ANN_STUDIES)
    assert r.status_code == 403 and "/accounts/password/" in r.json()["detail"]

    page = client.get("/accounts/password/")
    assert page.status_code == 200 and "one-time password" in page.content.decode()
    weak = client.post(
        "/accounts/password/",
        {"old_password": password, "new_password1": "1234567890", "new_password2": "1234567890"},
    )
    assert weak.status_code == 200
    assert "This password is too common." in weak.content.decode()
    assert "This password is entirely numeric." in weak.content.decode()
    mine = "correct horse battery staple"
    r = client.post(
        "/accounts/password/",
        {"old_password": password, "new_password1": mine, "new_password2": mine},
    )
    assert r.status_code == 302 and r.url == "/"
    profile = Profile.objects.get(user__username="newbie")
    assert not profile.must_change_password and profile.password_expires_at is None

    assert client.get("/").status_code == 200  # still logged in, and free to go on
    assert client.get(ANN_STUDIES).status_code == 200
    assert token_client.get(ANN_STUDIES).status_code == 200
    assert _logged_in(_login(Client(), "newbie", mine))
