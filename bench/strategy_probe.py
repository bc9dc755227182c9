"""How learnable is ESConv's strategy from the history, with N labelled turns? (issue #20, item 7)

    python bench/strategy_probe.py [--window 2] [--train-sizes 120,1200,4096,0]

A multinomial naive Bayes (add-one smoothing, the label prior included) over the words of the
history window, each word tagged with its turn's speaker and distance from the reply, learns
from the first N ESConv **train** turns that have a strategy (0: all of them) and is scored on
the same 256 **valid** contexts as ``training.strategy_eval`` (seed 0). It is a yardstick, not a
model we ship: a GRPO prompt carries at most one labelled turn's worth of information, so this
shows what N prompts can teach even a learner suited to the task. Each line prints the accuracy
with its ratio to the majority label's; the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

WORD = re.compile(r"[a-z']+|[?!.]")


def features(example) -> set[str]:
    """Words of the window, tagged with speaker initial and distance (``s1_sorry``)."""
    n = len(example.history)
    tagged = {
        f"{turn.speaker[:1]}{n - i}_{word}"
        for i, turn in enumerate(example.history)
        for word in WORD.findall(turn.text.lower())
    }
    return tagged or {"<empty>"}


class NaiveBayes:
    def __init__(self, rows: list[tuple[set[str], str]]) -> None:
        self.prior = Counter(label for _, label in rows)
        self.counts = {label: Counter() for label in self.prior}
        for feats, label in rows:
            self.counts[label].update(feats)
        self.vocab = set().union(*self.counts.values())
        self.totals = {label: sum(c.values()) for label, c in self.counts.items()}

    def predict(self, feats: set[str]) -> str:
        def score(label: str) -> float:
            denom = self.totals[label] + len(self.vocab)
            known = (w for w in feats if w in self.vocab)
            return math.log(self.prior[label]) + sum(
                math.log((self.counts[label][w] + 1) / denom) for w in known
            )

        return max(sorted(self.prior), key=score)


def main() -> None:
    from models.care_format import canonical_strategy
    from training.datasets import load_dialogues, turn_examples
    from training.strategy_eval import heldout_examples

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--window", type=int, default=2)
    parser.add_argument("--train-sizes", default="120,1200,4096,0")
    parser.add_argument("--contexts", type=int, default=256)
    opts = parser.parse_args()
    sizes = [int(s) for s in opts.train_sizes.split(",")]
    train = [
        (features(ex), canonical_strategy(ex.strategy))
        for ex in turn_examples(load_dialogues("esconv", "train"), window=opts.window)
        if canonical_strategy(ex.strategy) and ex.target.strip()
    ]
    test = [
        (features(ex), canonical_strategy(ex.strategy))
        for ex in heldout_examples(opts.contexts, split="valid", window=opts.window, seed=0)
    ]
    majority_label, majority_n = Counter(label for _, label in test).most_common(1)[0]
    majority = majority_n / len(test)
    print(f"majority label on the {len(test)} valid contexts: {majority_label} {majority:.3f}")
    result: dict[str, object] = {"window": opts.window, "contexts": len(test)}
    for n in sizes:
        model = NaiveBayes(train[:n] if n else train)
        acc = sum(model.predict(f) == gold for f, gold in test) / len(test)
        used = n or len(train)
        print(f"  NB from {used} train turns: {acc:.3f} ({acc / majority:.2f}x majority)")
        result[f"nb_acc_{n or 'all'}"] = round(acc, 4)
    result["majority_acc"] = round(majority, 4)
    result["train_turns"] = len(train)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
