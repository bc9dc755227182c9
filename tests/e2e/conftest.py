"""Browser tests: Debian's chromium driven by Playwright against pytest-django's live server.

Playwright's sync API keeps an event loop running in the test thread, so Django's
async-safety check would refuse every ORM call the tests make to set up or inspect data.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"

CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parents[2] / "var" / "screenshots"
PASSWORD = "pw-123456"  # tests.factories.UserFactory sets it
SECRET_SYSTEMS = ("ZZSECRETSYSTEM-care", "ZZSECRETSYSTEM-base")
SECRET_PATH = "/ckpt/ZZSECRETPATH/{name}"
LAPTOP = {"width": 1366, "height": 768}
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing; install it with `apt-get install -y chromium`")
    return {
        **browser_type_launch_args,
        "executable_path": CHROMIUM,
        "args": [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    }


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    return {**browser_context_args, "viewport": LAPTOP}


@pytest.fixture
def page(page):
    page.set_default_timeout(10_000)
    return page


@pytest.fixture
def screenshot_dir() -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    return SCREENSHOTS


def make_blind_study(*, n_contexts: int = 3, k: int = 1, **kw):
    """An open study whose system names and checkpoint paths are easy to spot if they leak.

    The factory's response texts name their system, so they are replaced by neutral ones.
    """
    from pairwise.models import Checkpoint, Response
    from tests.factories import make_study

    study, checkpoints, contexts = make_study(
        n_contexts=n_contexts, systems=SECRET_SYSTEMS, k=k, **kw
    )
    for ck in checkpoints:
        # Checkpoints are immutable through save(); the path is only set up for the test.
        Checkpoint.objects.filter(pk=ck.pk).update(path=SECRET_PATH.format(name=ck.system.name))
    for i, response in enumerate(Response.objects.filter(checkpoint__in=checkpoints)):
        Response.objects.filter(pk=response.pk).update(
            text=f"Neutral candidate reply number {i}. It sounds like a hard week."
        )
    return study, checkpoints, contexts


def login(page, live_server, username: str, password: str = PASSWORD) -> None:
    """Log in through the real form, as a person would."""
    page.goto(f"{live_server.url}/accounts/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_load_state()
    assert "/accounts/login/" not in page.url, f"login failed for {username}: {page.url}"


def progress_numbers(page) -> tuple[int, int]:
    text = page.locator("#progress-text").inner_text()
    match = re.fullmatch(r"Item (\d+) of (\d+)", text.strip())
    assert match, f"progress text {text!r} is not 'Item N of M'"
    return int(match[1]), int(match[2])
