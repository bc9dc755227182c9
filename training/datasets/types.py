"""The one dialogue type every corpus loader produces."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

Speaker = Literal["seeker", "supporter"]
SEEKER: Speaker = "seeker"
SUPPORTER: Speaker = "supporter"


@dataclass(frozen=True, slots=True)
class Turn:
    speaker: Speaker
    text: str
    strategy: str | None = None  # normalised strategy label; only supporter turns carry one

    def to_dict(self) -> dict:
        return {"speaker": self.speaker, "text": self.text, "strategy": self.strategy}

    @classmethod
    def from_dict(cls, d: dict) -> Turn:
        return cls(speaker=d["speaker"], text=d["text"], strategy=d.get("strategy"))


@dataclass(frozen=True, slots=True)
class Dialogue:
    id: str  # stable within its source, e.g. "esconv/train/17"
    source: str  # "esconv", "esconv-failed", "augesc", "extes"
    turns: tuple[Turn, ...]
    situation: str | None = None
    emotion_type: str | None = None
    problem_type: str | None = None
    experience_type: str | None = None
    survey: dict = field(default_factory=dict)  # seeker survey scores (ints), where present


@dataclass(frozen=True, slots=True)
class TurnExample:
    """One supporter turn to predict: the history before it, the gold text and the gold strategy."""

    dialogue_id: str
    source: str
    turn_index: int  # index of the target turn in Dialogue.turns
    history: tuple[Turn, ...]
    target: str
    strategy: str | None
    situation: str | None = None
    emotion_type: str | None = None
    problem_type: str | None = None
