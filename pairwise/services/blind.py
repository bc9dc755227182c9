"""The only view of an item that annotators get: texts and an opaque id.

Anything added here reaches annotators: never add a system, checkpoint or response id, a
strategy label, or reasoning. Escaping is left to the template engine / JSON encoder.
"""

from __future__ import annotations

from pairwise.models import ComparisonItem


def blind_item(item: ComparisonItem) -> dict:
    history = [
        {"speaker": "seeker" if t["speaker"] == "seeker" else "supporter", "text": t["text"]}
        for t in item.context.history
    ]
    return {
        "id": item.public_id,
        "history": history,
        "left": item.left.text,
        "right": item.right.text,
    }
