"""The fake backend: deterministic, fast, and able to fail and malform on purpose."""

from __future__ import annotations

import time

import pytest

from models.base import BackendError, GenerationRequest, SamplingParams, TransientBackendError
from models.care_format import parse_care_output
from models.fake import FakeBackend
from training.datasets.strategies import ESCONV_STRATEGIES

SAD = [
    {"role": "system", "content": "Be kind."},
    {"role": "user", "content": "I lost my job yesterday and I feel worthless."},
]
BREAKUP = [
    {"role": "system", "content": "Be kind."},
    {"role": "user", "content": "My girlfriend broke up with me after five years."},
]
SAMPLE = SamplingParams()


def req(messages, seed=0, sampling=SAMPLE):
    return GenerationRequest(messages=messages, sampling=sampling, seed=seed)


def texts(backend, requests):
    return [g.text for g in backend.generate(requests)]


def test_same_inputs_same_text_across_instances_and_batches():
    a = texts(FakeBackend("m1"), [req(SAD, 1), req(BREAKUP, 2)])
    b = texts(FakeBackend("m1"), [req(BREAKUP, 2)]) + texts(FakeBackend("m1"), [req(SAD, 1)])
    assert a == [b[1], b[0]]


def test_seed_context_and_model_change_the_text():
    fake = FakeBackend("m1")
    by_seed = set(texts(fake, [req(SAD, seed) for seed in range(20)]))
    assert len(by_seed) > 10
    assert texts(fake, [req(SAD)]) != texts(fake, [req(BREAKUP)])
    assert texts(fake, [req(SAD)]) != texts(FakeBackend("m2"), [req(SAD)])


def test_greedy_ignores_the_seed_like_real_backends():
    greedy = SamplingParams(temperature=0)
    assert len(set(texts(FakeBackend(), [req(SAD, s, greedy) for s in range(10)]))) == 1


def test_reply_mentions_the_user_and_counts_tokens():
    (g,) = FakeBackend().generate([req(SAD)])
    assert g.finish_reason == "stop"
    assert g.completion_tokens == len(g.text.split())
    assert g.prompt_tokens > len("I lost my job yesterday and I feel worthless.".split())
    cut = FakeBackend().generate([req(SAD, sampling=SamplingParams(max_new_tokens=3))])[0]
    assert (cut.finish_reason, cut.completion_tokens, len(cut.text.split())) == ("length", 3, 3)


def test_reasoning_output_is_a_complete_care_chain():
    fake = FakeBackend(reasoning=True)
    parsed = [parse_care_output(t) for t in texts(fake, [req(SAD, s) for s in range(30)])]
    assert all(p.status == "complete" for p in parsed)
    assert all(p.strategy in ESCONV_STRATEGIES for p in parsed)
    assert len({p.strategy for p in parsed}) > 3
    assert all("<" not in p.response for p in parsed)


def test_malformed_rate_breaks_that_share_of_outputs():
    fake = FakeBackend(reasoning=True, malformed_rate=0.3)
    statuses = [parse_care_output(t).status for t in texts(fake, [req(SAD, s) for s in range(400)])]
    broken = sum(s != "complete" for s in statuses) / len(statuses)
    assert 0.22 < broken < 0.38
    assert {"malformed", "missing_node", "out_of_order"} <= set(statuses)
    assert set(texts(FakeBackend(reasoning=True, malformed_rate=1.0), [req(SAD)])) != set(
        texts(FakeBackend(reasoning=True), [req(SAD)])
    )


def test_fail_every_fails_the_batch_holding_the_nth_request():
    fake = FakeBackend(fail_every=3)
    fake.generate([req(SAD), req(SAD)])  # requests 1-2
    with pytest.raises(TransientBackendError, match="fail_every=3"):
        fake.generate([req(SAD)])  # request 3
    fake.generate([req(SAD), req(SAD)])  # 4-5
    with pytest.raises(BackendError):
        FakeBackend(fail_every=1, fail_permanently=True).generate([req(SAD)])
    with pytest.raises(BackendError) as info:
        FakeBackend(fail_every=1, fail_permanently=True).generate([req(SAD)])
    assert not isinstance(info.value, TransientBackendError)


def test_fast_enough_to_stand_in_everywhere():
    requests = [req(SAD, s) for s in range(2000)]
    fake = FakeBackend(reasoning=True)
    start = time.perf_counter()
    fake.generate(requests)
    assert (time.perf_counter() - start) / len(requests) < 1e-3  # ~0.15 ms measured under load


def test_bad_messages_are_rejected():
    with pytest.raises(BackendError, match=r"messages\[0\]\.content"):
        FakeBackend().generate([req([{"role": "user", "content": None}])])
