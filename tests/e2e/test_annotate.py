"""An annotator judges items in a real browser: mouse, keyboard, cannot-judge, and edge cases."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from pairwise.models import ComparisonItem, Judgment, Lease
from tests.e2e.conftest import LAPTOP, PHONE, login, make_blind_study, progress_numbers
from tests.factories import annotator

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

PAYLOAD = "<script>window.__pwned=1</script><b>bold</b>"


def annotate_url(live_server, study) -> str:
    return f"{live_server.url}/study/{study.pk}/annotate/"


def press_enter_and_wait(page) -> None:
    """Enter submits the form; wait until the next page has loaded."""
    with page.expect_navigation():
        page.keyboard.press("Enter")


def keys_ready(page) -> None:
    """annotate.js outlines the first criterion once it listens for keys."""
    expect(page.locator("fieldset.criterion.current")).to_have_count(1)


def criterion(page, index: int):
    return page.locator(f"fieldset.criterion[data-index='{index}']")


def shown_item(page) -> ComparisonItem:
    public_id = page.locator("input[name=item]").input_value()
    return ComparisonItem.objects.select_related("response_a", "response_b").get(
        public_id=public_id
    )


def test_annotator_judges_with_mouse_keyboard_and_cannot_judge(live_server, page, screenshot_dir):
    study, _, _ = make_blind_study(n_contexts=3, k=1, guidelines="Read both replies **carefully**.")
    criteria = study.criteria
    user = annotator(study, username="alice")

    page.goto(f"{live_server.url}/accounts/login/")
    page.screenshot(path=screenshot_dir / "login.png")
    login(page, live_server, "alice")

    # Home -> guidelines -> start judging.
    expect(page.get_by_role("heading", name="Your studies")).to_be_visible()
    page.screenshot(path=screenshot_dir / "home.png")
    page.get_by_role("link", name="Guidelines").click()
    expect(page.locator("article.guidelines strong")).to_have_text("carefully")
    page.screenshot(path=screenshot_dir / "guidelines.png")
    page.get_by_role("link", name="Start judging").click()
    expect(page.locator("#progress-text")).to_have_text("Item 1 of 3")
    page.screenshot(path=screenshot_dir / "annotate-laptop.png")

    # Item 1, mouse only: click the labels, type a comment, click Submit.
    first = shown_item(page)
    assert page.locator("#reply-a .reply-text").inner_text() == first.left.text
    assert page.locator("#reply-b .reply-text").inner_text() == first.right.text
    mouse_pick = ["A is better", "Tie", "B is better", "A is better", "B is better"]
    for i, label in enumerate(mouse_pick[: len(criteria)]):
        criterion(page, i).get_by_text(label, exact=True).click()
    page.get_by_label("Comment (optional)").fill("B rambles a bit.")
    page.screenshot(path=screenshot_dir / "annotate-laptop-answered.png")
    page.get_by_role("button", name="Submit judgment").click()
    expect(page.locator("#progress-text")).to_have_text("Item 2 of 3")

    # Item 2, keyboard only: 1/2/3 per criterion, an arrow key to go back one, Enter to submit.
    keys_ready(page)
    second = shown_item(page)
    assert second.pk != first.pk
    keys = ["3", "1", "2", "3", "1"][: len(criteria)]
    for key in keys:
        page.keyboard.press(key)
    page.keyboard.press("ArrowUp")
    page.keyboard.press("2")  # changes the second-to-last criterion to a tie
    expected_keys = {"1": "left", "2": "tie", "3": "right"}
    keyboard_pick = [expected_keys[k] for k in keys]
    keyboard_pick[-2] = "tie"
    for i, value in enumerate(keyboard_pick):
        expect(criterion(page, i).locator(f"input[value={value}]")).to_be_checked()
    page.keyboard.press("Enter")
    expect(page.locator("#progress-text")).to_have_text("Item 3 of 3")

    # Item 3: "cannot judge" needs a reason; without one the same item comes back with a message.
    keys_ready(page)
    third = shown_item(page)
    page.keyboard.press("x")
    expect(page.locator("#cannot_judge_reason")).to_be_focused()
    page.locator("#cannot-submit").click()
    expect(page.locator(".messages")).to_contain_text("give a reason")
    assert shown_item(page).pk == third.pk
    # Enter on the focused toggle opens it (it must not submit the form); Enter in the reason
    # box submits "cannot judge".
    page.locator("#cannot-box summary").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_label("Why not?")).to_be_visible()
    assert shown_item(page).pk == third.pk
    page.get_by_label("Why not?").fill("Both replies are cut off.")
    press_enter_and_wait(page)

    expect(page.get_by_role("heading", name="All done")).to_be_visible()
    page.screenshot(path=screenshot_dir / "done.png", full_page=True)

    judgments = {j.item_id: j for j in Judgment.objects.filter(annotator=user)}
    assert set(judgments) == {first.pk, second.pk, third.pk}
    assert Judgment.objects.filter(annotator=user).count() == 3
    to_side = {"A is better": "left", "Tie": "tie", "B is better": "right"}
    assert judgments[first.pk].choices == {
        c: to_side[label] for c, label in zip(criteria, mouse_pick, strict=False)
    }
    assert judgments[first.pk].comment == "B rambles a bit."
    assert judgments[second.pk].choices == dict(zip(criteria, keyboard_pick, strict=True))
    assert judgments[third.pk].cannot_judge is True
    assert judgments[third.pk].cannot_judge_reason == "Both replies are cut off."
    assert judgments[third.pk].choices == {}
    assert all(j.seconds > 0 for j in judgments.values())
    assert not Lease.objects.filter(annotator=user).exists()


def test_double_submission_records_one_judgment(live_server, page):
    study, _, _ = make_blind_study(n_contexts=2, k=1)
    user = annotator(study, username="bob")
    login(page, live_server, "bob")
    page.goto(annotate_url(live_server, study))
    item = shown_item(page)
    csrf = page.locator("#judge-form input[name=csrfmiddlewaretoken]").input_value()
    form = {
        "csrfmiddlewaretoken": csrf,
        "item": item.public_id,
        **{f"choice-{i}": "tie" for i in range(len(study.criteria))},
    }
    for i in range(len(study.criteria)):
        criterion(page, i).get_by_text("Tie", exact=True).click()

    page.locator("#submit").dblclick()
    expect(page.locator("#progress-text")).to_have_text("Item 2 of 2")
    assert Judgment.objects.filter(item=item, annotator=user).count() == 1

    # The same POST again, as a reload or a back-and-resubmit would send it.
    response = page.request.post(annotate_url(live_server, study), form=form)
    assert response.status == 200, response.status
    assert "Item 2 of 2" in response.text()
    assert Judgment.objects.filter(item=item, annotator=user).count() == 1
    assert ComparisonItem.objects.get(pk=item.pk).judgment_count == 1


def test_expired_lease_shows_a_message_and_the_next_item(live_server, page, screenshot_dir):
    study, _, _ = make_blind_study(n_contexts=2, k=1)
    user = annotator(study, username="carol")
    login(page, live_server, "carol")
    page.goto(annotate_url(live_server, study))
    item = shown_item(page)
    keys_ready(page)
    for _ in range(len(study.criteria)):
        page.keyboard.press("1")
    Lease.objects.filter(item=item, annotator=user).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    press_enter_and_wait(page)

    expect(page.locator(".messages")).to_contain_text("ran out")
    page.screenshot(path=screenshot_dir / "annotate-expired.png")
    expect(page.locator("#judge-form")).to_be_visible()
    assert progress_numbers(page) == (1, 2)
    assert not Judgment.objects.filter(annotator=user).exists()

    # The annotator can go on to the end.
    for _ in range(2):
        keys_ready(page)
        for _ in range(len(study.criteria)):
            page.keyboard.press("2")
        press_enter_and_wait(page)
    expect(page.get_by_role("heading", name="All done")).to_be_visible()
    assert Judgment.objects.filter(annotator=user).count() == 2


def test_model_output_and_guidelines_are_escaped(live_server, page):
    from pairwise.models import EvalContext, Response

    guidelines = 'Be kind.<script>window.__pwned_g=1</script><img src="x" onerror="window.__x=1">'
    study, _, contexts = make_blind_study(n_contexts=1, k=1, guidelines=guidelines)
    item = ComparisonItem.objects.get(study=study)
    Response.objects.filter(pk=item.left.pk).update(text=PAYLOAD)
    history = contexts[0].history
    history[0]["text"] = PAYLOAD
    EvalContext.objects.filter(pk=contexts[0].pk).update(history=history)
    annotator(study, username="dave")
    login(page, live_server, "dave")

    page.goto(f"{live_server.url}/study/{study.pk}/guidelines/")
    expect(page.get_by_text("Be kind.")).to_be_visible()
    assert page.evaluate("() => [window.__pwned_g, window.__x]") == [None, None]

    page.goto(annotate_url(live_server, study))
    assert page.evaluate("() => window.__pwned") is None
    expect(page.locator("#reply-a .reply-text")).to_have_text(PAYLOAD)
    expect(page.locator(".chat .turn").first.locator("p")).to_have_text(PAYLOAD)
    assert page.locator("main b, main script").count() == 0


def _attributes(page) -> dict[str, list[str]]:
    return page.evaluate(
        """() => {
        const out = {ids: [], names: [], urls: [], data: [], hidden: []};
        for (const el of document.querySelectorAll('*')) {
          if (el.id) out.ids.push(el.id);
          if (el.getAttribute('name')) out.names.push(el.getAttribute('name'));
          if (el.getAttribute('for')) out.ids.push(el.getAttribute('for'));
          for (const a of ['href', 'src', 'action', 'formaction']) {
            if (el.getAttribute(a) !== null) out.urls.push(new URL(el.getAttribute(a) || '',
                                                                   location.href).pathname);
          }
          for (const [k, v] of Object.entries(el.dataset)) out.data.push(k + '=' + v);
          if (el.type === 'hidden' && el.name !== 'csrfmiddlewaretoken') out.hidden.push(el.value);
        }
        return out;
      }"""
    )


def test_annotator_pages_are_blind(live_server, page):
    from pairwise.models import Checkpoint, Response

    study, checkpoints, _ = make_blind_study(n_contexts=3, k=1)
    annotator(study, username="erin")
    requested: list[str] = []
    page.on("request", lambda r: requested.append(r.url))
    public_ids = set(ComparisonItem.objects.filter(study=study).values_list("public_id", flat=True))
    secret_pks = {str(pk) for pk in Response.objects.values_list("pk", flat=True)} | {
        str(pk) for pk in Checkpoint.objects.values_list("pk", flat=True)
    }
    n_criteria = len(study.criteria)

    def check_page() -> None:
        html = page.content()
        assert "ZZSECRET" not in html, f"{page.url} leaks a system name or checkpoint path"
        attrs = _attributes(page)
        for value in attrs["ids"] + attrs["names"] + attrs["data"]:
            for number in re.findall(r"\d+", value):
                # Only criterion positions (0..n-1, or 1..n in labels) may appear as numbers.
                assert int(number) <= n_criteria, f"{page.url}: {value!r} carries a number"
        for path in attrs["urls"]:
            for number in re.findall(r"\d+", path):
                assert number == str(study.pk), f"{page.url}: URL {path!r} carries an id"
        for value in attrs["hidden"]:
            assert value in public_ids, f"{page.url}: hidden field {value!r} is not a public id"
            assert value not in secret_pks

    login(page, live_server, "erin")
    check_page()
    page.goto(f"{live_server.url}/study/{study.pk}/guidelines/")
    check_page()
    page.goto(annotate_url(live_server, study))
    for _ in range(3):
        check_page()
        keys_ready(page)
        for _ in range(n_criteria):
            page.keyboard.press("3")
        press_enter_and_wait(page)
    expect(page.get_by_role("heading", name="All done")).to_be_visible()
    check_page()

    for url in requested:
        path = re.sub(r"^https?://[^/]+", "", url).split("?")[0]
        assert "ZZSECRET" not in url
        for number in re.findall(r"\d+", path):
            assert number == str(study.pk), f"request {url} carries an id"


@pytest.mark.parametrize("viewport", ["laptop", "phone"])
def test_replies_side_by_side_on_a_laptop_and_stacked_on_a_phone(
    live_server, browser, viewport, screenshot_dir
):
    size = LAPTOP if viewport == "laptop" else PHONE
    context = browser.new_context(viewport=size, has_touch=viewport == "phone")
    page = context.new_page()
    page.set_default_timeout(10_000)
    study, _, _ = make_blind_study(n_contexts=1, k=1)
    annotator(study, username=f"fay-{viewport}")
    login(page, live_server, f"fay-{viewport}")
    page.goto(annotate_url(live_server, study))

    a = page.locator("#reply-a").bounding_box()
    b = page.locator("#reply-b").bounding_box()
    if viewport == "laptop":
        assert abs(a["y"] - b["y"]) < 1 and b["x"] > a["x"] + a["width"] - 1
    else:
        assert b["y"] >= a["y"] + a["height"] - 1 and abs(a["x"] - b["x"]) < 1
        page.screenshot(path=screenshot_dir / "annotate-phone.png", full_page=True)
    # Nothing forces sideways scrolling, and every choice can be reached.
    assert page.evaluate("() => document.documentElement.scrollWidth") <= size["width"]
    for radio in page.locator("fieldset.criterion input[type=radio]").all():
        box = radio.locator("xpath=..").bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= size["width"]
    context.close()
