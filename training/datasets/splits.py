"""Train/valid/test splits: ESConv's official one, and the seeded one we use for the others.

Both are the procedure of ESConv's own reformatting script (``codes_zcj/_reformat``): seed a
Mersenne Twister with 13, shuffle the whole list once, take valid from the front, test next,
train is the rest. Only the fractions differ: 15/15 for ESConv (70/15/15 overall) and 5/5 for
AugESC, ExTES and FailedESConv (90/5/5), which have no published split.
"""

from __future__ import annotations

import random

SPLITS: tuple[str, ...] = ("train", "valid", "test")
SEED = 13
ESCONV_VALID_FRACTION = ESCONV_TEST_FRACTION = 0.15
DERIVED_VALID_FRACTION = DERIVED_TEST_FRACTION = 0.05


def shuffle_split(
    n: int, *, seed: int, valid_fraction: float, test_fraction: float
) -> dict[str, list[int]]:
    """Split record indices ``0..n-1``: one seeded shuffle, valid first, then test, then train.

    Indices come back in shuffled order. ``random.Random(seed).shuffle`` draws the same
    permutation as ``random.seed(seed); random.shuffle(...)`` on a list of the same length, and
    the permutation depends only on the length, so shuffling indices equals shuffling records.

    >>> shuffle_split(10, seed=13, valid_fraction=0.2, test_fraction=0.2)["valid"]
    [3, 0]
    """
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_valid, n_test = int(valid_fraction * n), int(test_fraction * n)
    return {
        "train": order[n_valid + n_test :],
        "valid": order[:n_valid],
        "test": order[n_valid : n_valid + n_test],
    }


def esconv_official_split(n: int) -> dict[str, list[int]]:
    """ESConv's official split of ``ESConv.json`` (n = 1,300 gives 910/195/195), shuffled order.

    The position of an index in its list is the line it has in the published split file.
    """
    return shuffle_split(
        n, seed=SEED, valid_fraction=ESCONV_VALID_FRACTION, test_fraction=ESCONV_TEST_FRACTION
    )


def derived_split(n: int) -> dict[str, list[int]]:
    """Our 90/5/5 split (seed 13) for corpora without an official one; indices ascending."""
    parts = shuffle_split(
        n, seed=SEED, valid_fraction=DERIVED_VALID_FRACTION, test_fraction=DERIVED_TEST_FRACTION
    )
    return {name: sorted(indices) for name, indices in parts.items()}
