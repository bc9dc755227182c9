"""A deterministic fake backend: the rest of the system is testable in microseconds.

The text is a pure function of (model, reasoning, messages, sampling, seed): equal inputs give
equal text, and a different seed (when sampling), context or model gives a different one. With
``reasoning=True`` the text is a CARE chain written by ``models.care_format`` followed by the
reply, and ``malformed_rate`` makes a stable fraction of outputs broken in the ways real models
break them. ``fail_every`` makes batches fail, to test retries; ``delay`` makes them slow, to
test what happens when a worker dies mid-batch.
"""

from __future__ import annotations

import hashlib
import random
import re
import threading
import time
from collections.abc import Sequence

from models.base import (
    Backend,
    BackendError,
    Generation,
    GenerationRequest,
    TransientBackendError,
    check_messages,
    prompt_hash,
)
from models.care_format import format_care_output
from training.datasets.strategies import ESCONV_STRATEGIES

_OPENERS = (
    "That sounds really hard.",
    "I can hear how much this weighs on you.",
    "Thank you for telling me about this.",
    "It makes sense that you feel this way.",
    "I'm sorry you're going through this.",
    "You have been carrying a lot.",
)
_FOLLOW_UPS = (
    "What has helped you the most so far?",
    "How long have you been feeling like this?",
    "Have you been able to talk to anyone close to you about it?",
    "Maybe a short walk or a call with a friend could give you a little space.",
    "Many people feel the same when {topic} gets this heavy.",
    "When I went through something similar, writing things down helped me.",
    "It sounds like {topic} really matters to you.",
)
_EMOTIONS = ("anxious", "sad", "overwhelmed", "frustrated", "lonely", "worried", "ashamed")
_WORD = re.compile(r"[A-Za-z']{4,}")
_MALFORMATIONS = ("unclosed", "missing_node", "out_of_order", "no_reply")


class FakeBackend(Backend):
    """Deterministic canned generations. Token counts are whitespace-separated words."""

    name = "fake"
    version = "1"

    def __init__(
        self,
        model: str = "fake",
        *,
        reasoning: bool = False,
        malformed_rate: float = 0.0,
        fail_every: int | None = None,
        fail_permanently: bool = False,
        delay: float = 0.0,
    ) -> None:
        """``fail_every=n``: the batch holding the n-th, 2n-th, ... request of this instance
        raises ``TransientBackendError`` (``BackendError`` with ``fail_permanently``).
        ``delay``: seconds slept per request, like a slow model (worker-kill tests)."""
        if not 0.0 <= malformed_rate <= 1.0:
            raise ValueError(f"malformed_rate={malformed_rate}: expected 0 <= rate <= 1")
        if fail_every is not None and fail_every < 1:
            raise ValueError(f"fail_every={fail_every}: expected None or an integer >= 1")
        if delay < 0:
            raise ValueError(f"delay={delay}: expected seconds >= 0")
        self.model = model
        self.reasoning = reasoning
        self.malformed_rate = malformed_rate
        self.fail_every = fail_every
        self.fail_permanently = fail_permanently
        self.delay = delay
        self._seen = 0
        self._lock = threading.Lock()

    def generate(self, requests: Sequence[GenerationRequest]) -> list[Generation]:
        start = time.perf_counter()
        with self._lock:
            first, self._seen = self._seen, self._seen + len(requests)
        if self.fail_every and any(
            (first + i + 1) % self.fail_every == 0 for i in range(len(requests))
        ):
            error = BackendError if self.fail_permanently else TransientBackendError
            raise error(
                f"fake backend {self.model!r}: scripted failure (fail_every={self.fail_every})"
            )
        if self.delay:
            time.sleep(self.delay * len(requests))
        texts = [self._text(r) for r in requests]
        share = (time.perf_counter() - start) / max(len(requests), 1)
        out = []
        for request, text in zip(requests, texts, strict=True):
            words = text.split()
            limit = request.sampling.max_new_tokens
            finish = "stop"
            if len(words) > limit:  # honour max_new_tokens the way a real model gets cut off
                text, finish = " ".join(words[:limit]), "length"
            prompt_words = sum(len(m["content"].split()) for m in request.messages)
            out.append(
                Generation(
                    text=text,
                    prompt_tokens=prompt_words + 4 * len(request.messages),
                    completion_tokens=min(len(words), limit),
                    finish_reason=finish,
                    seconds=share,
                )
            )
        return out

    def _text(self, request: GenerationRequest) -> str:
        messages = check_messages(request.messages)
        # Greedy decoding ignores the seed, as real backends do.
        seed_part = "greedy" if request.sampling.greedy else str(request.seed)
        key = "|".join(
            [
                self.model,
                str(self.reasoning),
                prompt_hash(messages),
                request.sampling.key(),
                seed_part,
            ]
        )
        digest = hashlib.sha256(key.encode()).digest()
        rng = random.Random(digest)
        last_user = next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")
        words = _WORD.findall(last_user)
        topic = rng.choice(words).lower() if words else "this"
        reply = f"{rng.choice(_OPENERS)} {rng.choice(_FOLLOW_UPS).format(topic=topic)}"
        if not self.reasoning:
            return reply
        strategy = rng.choice(ESCONV_STRATEGIES)
        emotion = rng.choice(_EMOTIONS)
        text = format_care_output(
            context=f"The seeker talks about {topic}.",
            cognition=f"They believe {topic} will not get better.",
            emotion=f"They feel {emotion}.",
            strategy=strategy,
            plan=f"Use {strategy} to help them feel heard about {topic}.",
            response=reply,
        )
        # A separate draw, so the rate does not change which texts are generated.
        if random.Random(digest[::-1]).random() < self.malformed_rate:
            text = _malform(text, _MALFORMATIONS[digest[0] % len(_MALFORMATIONS)])
        return text


def _malform(text: str, how: str) -> str:
    """Break a complete CARE text the way small models do."""
    if how == "unclosed":
        return text.replace("</think>", "", 1)
    if how == "missing_node":
        return re.sub(r"<emotion>.*?</emotion>", "", text, count=1)
    if how == "out_of_order":
        emotion = re.search(r"<emotion>.*?</emotion>", text).group(0)
        cognition = re.search(r"<cognition>.*?</cognition>", text).group(0)
        return text.replace(cognition, "\0").replace(emotion, cognition).replace("\0", emotion)
    if how == "no_reply":
        return text[: text.index("</think>") + len("</think>")]
    raise ValueError(f"unknown malformation {how!r}")
