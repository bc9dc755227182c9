"""Studies built in bulk at a live site's scale, straight into the tables: the annotator
benchmark (bench/annotators.py) and the allocation-plan tests load them. Not used by the site."""

from __future__ import annotations

import random
import secrets

CRITERIA = ["Fluency", "Identification", "Comforting", "Suggestion", "Overall"]
HISTORY = [
    {
        "speaker": "seeker",
        "text": "I lost my job last week and I can't stop worrying.",
        "strategy": None,
    },
    {
        "speaker": "supporter",
        "text": "I'm so sorry. That is a lot to carry. How are you coping?",
        "strategy": "Question",
    },
    {
        "speaker": "seeker",
        "text": "Not well. I can't sleep and I feel like a failure.",
        "strategy": None,
    },
]


def populate(
    n_items: int,
    n_annotators: int,
    k: int,
    seed: int,
    history: int = 0,
    comparisons: int = 2,
) -> tuple[int, list[str]]:
    """Bulk-create the study and the annotators; return (study id, tokens).

    `history`: judgments each annotator already made, on items completed by k of them, stored
    in random order as a live site's would be, each with its Exposure (what was shown).
    `comparisons`: how many baselines system A is compared with on every context."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from pairwise import models as m
    from pairwise.services import counters
    from pairwise.services.sampling import sampling_key

    call_command("migrate", verbosity=0)
    rng = random.Random(seed)
    names = ("CARE", "ESConv-SFT", "Base", "ExTES-SFT")[: comparisons + 1]
    systems = [m.System.objects.create(name=n) for n in names]
    checkpoints = [
        m.Checkpoint.objects.create(system=s, version=1, backend="static") for s in systems
    ]
    n_contexts = n_items // comparisons
    contexts = m.EvalContext.objects.bulk_create(
        [
            m.EvalContext(
                source="bench",
                dialogue_id=f"bench/{i}",
                turn_index=3,
                history=HISTORY,
                gold_response="That sounds exhausting.",
            )
            for i in range(n_contexts)
        ],
        batch_size=2000,
    )
    study = m.Study.objects.create(
        name="bench annotators", overlap_k=k, criteria=CRITERIA, status=m.Study.Status.OPEN
    )
    m.Study.contexts.through.objects.bulk_create(
        [m.Study.contexts.through(study_id=study.pk, evalcontext_id=c.pk) for c in contexts],
        batch_size=5000,
    )
    key = sampling_key(study.sampling)
    responses, keys = {}, {}
    for ck in checkpoints:
        rows = m.Response.objects.bulk_create(
            [
                m.Response(
                    checkpoint=ck,
                    context=c,
                    sampling_key=key,
                    # no system name in it: the identity filter would flag it
                    text=f"Reply {ck.pk}-{c.pk}: that sounds hard. How are you sleeping?",
                    parse_status=m.Response.ParseStatus.NO_REASONING,
                )
                for c in contexts
            ],
            batch_size=2000,
        )
        responses[ck.pk] = {r.context_id: r.pk for r in rows}
        keys[ck.pk] = {r.context_id: m.text_key(r.text) for r in rows}
    items = []
    for other in checkpoints[1:]:
        comparison = m.Comparison.objects.create(
            study=study, checkpoint_a=checkpoints[0], checkpoint_b=other
        )
        sides = [i % 2 == 0 for i in range(n_contexts)]
        rng.shuffle(sides)  # balanced: half of each comparison shows A on the left
        items += [
            m.ComparisonItem(
                public_id=secrets.token_urlsafe(12),
                study=study,
                comparison=comparison,
                context=c,
                response_a_id=responses[checkpoints[0].pk][c.pk],
                response_b_id=responses[other.pk][c.pk],
                key_a=keys[checkpoints[0].pk][c.pk],
                key_b=keys[other.pk][c.pk],
                a_on_left=side,
                order_key=rng.randrange(2**31),
            )
            for c, side in zip(contexts, sides, strict=True)
        ]
    m.ComparisonItem.objects.bulk_create(items, batch_size=2000)
    group, _ = Group.objects.get_or_create(name="annotator")
    users = get_user_model().objects.bulk_create(
        [
            get_user_model()(username=f"bench-annotator-{i}", password="!")  # unusable password
            for i in range(n_annotators)
        ]
    )
    get_user_model().groups.through.objects.bulk_create(
        [get_user_model().groups.through(user_id=u.pk, group_id=group.pk) for u in users]
    )
    # per-study access: an annotator reaches only the studies it is a member of
    m.StudyMember.objects.bulk_create(
        [m.StudyMember(study=study, user=u, role=m.StudyMember.Role.ANNOTATOR) for u in users]
    )
    tokens = Token.objects.bulk_create([Token(key=Token.generate_key(), user=u) for u in users])
    done = rng.sample(items, min(len(items), history * n_annotators // k)) if history else []
    judgments = [
        m.Judgment(item=item, study=study, annotator=user, choices={c: "tie" for c in CRITERIA})
        for item in done
        for user in rng.sample(users, k)
    ]
    rng.shuffle(judgments)
    m.Judgment.objects.bulk_create(judgments, batch_size=5000)
    m.Exposure.objects.bulk_create(
        [
            m.Exposure(
                study=study,
                annotator_id=j.annotator_id,
                item=j.item,
                context_id=j.item.context_id,
                key_a=j.item.key_a,
                key_b=j.item.key_b,
                a_on_left=j.item.a_on_left,
            )
            for j in judgments
        ],
        batch_size=5000,
    )
    counters.set_judgment_counts([i.pk for i in done], k)
    with __import__("django.db", fromlist=["connection"]).connection.cursor() as cursor:
        cursor.execute("ANALYZE")  # fresh statistics, as autovacuum would give a live site
    return study.pk, [t.key for t in tokens]


def check_invariants(study_id: int, k: int) -> dict:
    """The allocator's guarantees on the data the load left behind."""
    from django.db.models import Count, Sum

    from pairwise.models import ComparisonItem, Exposure, Judgment

    items = ComparisonItem.objects.filter(study_id=study_id)
    judgments = Judgment.objects.filter(item__study_id=study_id)
    duplicates = judgments.values("item_id", "annotator_id").annotate(n=Count("pk")).filter(n__gt=1)
    real = dict(judgments.values_list("item_id").annotate(n=Count("pk")))
    counted = dict(items.filter(judgment_count__gt=0).values_list("pk", "judgment_count"))
    return {
        "judgments": judgments.count(),
        "judgment_count_sum": items.aggregate(s=Sum("judgment_count"))["s"] or 0,
        "items_over_k": items.filter(judgment_count__gt=k).count(),
        "duplicate_judgments": duplicates.count(),
        "counts_match": real == counted,
        # items shown to an annotator who had seen one of their replies (the pool is ample)
        "repeat_exposures": Exposure.objects.filter(study_id=study_id, prior__gt=0).count(),
    }
