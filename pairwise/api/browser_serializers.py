"""The item browser's response shape (`GET /api/studies/{id}/items/`), for the schema.

The view answers `pairwise.services.browser.browse_items` as it is; these serializers document
it (schemathesis holds the answers to them)."""

from __future__ import annotations

from rest_framework import serializers

from pairwise.services import browser

ANSWERS = ("a", "b", "tie")


class BrowsedComparisonRefSerializer(serializers.Serializer):
    id = serializers.IntegerField(allow_null=True, help_text="None for gold items")
    label = serializers.CharField(help_text='"CARE v2 vs ESConv v1", or "gold"')


class BrowsedTurnSerializer(serializers.Serializer):
    speaker = serializers.CharField(allow_blank=True)
    text = serializers.CharField(allow_blank=True)
    strategy = serializers.CharField(allow_null=True)


class BrowsedContextSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    source = serializers.CharField()
    dialogue_id = serializers.CharField()
    turn_index = serializers.IntegerField()
    history = BrowsedTurnSerializer(many=True)
    gold_response = serializers.CharField(allow_blank=True)
    gold_strategy = serializers.CharField(allow_blank=True)


class BrowsedNodeSerializer(serializers.Serializer):
    name = serializers.ChoiceField(choices=list(browser.NODE_LABELS))
    label = serializers.CharField()
    text = serializers.CharField(allow_null=True, help_text="None when the node is missing")


class BrowsedReasoningSerializer(serializers.Serializer):
    status = serializers.CharField(help_text="The reply's parse status")
    status_label = serializers.CharField()
    strategy = serializers.CharField(allow_null=True, help_text="The plan's strategy")
    nodes = BrowsedNodeSerializer(many=True, help_text="Context, Cognition, Emotion, Support Plan")
    raw = serializers.CharField(allow_blank=True, help_text="The chain as stored")


class BrowsedReplySerializer(serializers.Serializer):
    response_id = serializers.IntegerField()
    system = serializers.CharField()
    checkpoint = serializers.CharField()
    checkpoint_id = serializers.IntegerField()
    text = serializers.CharField(allow_blank=True)
    strategy = serializers.CharField(allow_blank=True)
    parse_status = serializers.CharField()
    usable = serializers.BooleanField()
    truncated = serializers.BooleanField()
    reasoning = BrowsedReasoningSerializer(
        allow_null=True, help_text="The CARE nodes; None for a model without reasoning"
    )


class BrowsedSummarySerializer(serializers.Serializer):
    criterion = serializers.CharField(allow_null=True)
    label = serializers.CharField()
    outcome = serializers.ChoiceField(choices=list(browser.OUTCOMES))
    agreement = serializers.FloatField(
        allow_null=True, help_text="Share of annotators giving the most common answer"
    )
    level = serializers.ChoiceField(choices=list(browser.AGREEMENT_LEVELS))
    n = serializers.IntegerField(help_text="Answers on the criterion (cannot-judge left out)")
    a = serializers.IntegerField()
    b = serializers.IntegerField()
    tie = serializers.IntegerField()


class BrowsedJudgmentSerializer(serializers.Serializer):
    annotator = serializers.CharField()
    choices = serializers.DictField(
        child=serializers.ChoiceField(choices=list(ANSWERS), allow_null=True),
        help_text="criterion -> a | b | tie, from A's side",
    )
    cannot_judge = serializers.BooleanField()
    cannot_judge_reason = serializers.CharField(allow_blank=True)
    comment = serializers.CharField(allow_blank=True)
    seconds = serializers.FloatField()
    simulated = serializers.BooleanField()
    created_at = serializers.DateTimeField()


class BrowsedItemSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="The item's public id")
    comparison = BrowsedComparisonRefSerializer()
    is_gold = serializers.BooleanField()
    a_side = serializers.ChoiceField(choices=["left", "right"], help_text="Where A was shown")
    context = BrowsedContextSerializer()
    reply_a = BrowsedReplySerializer()
    reply_b = BrowsedReplySerializer()
    summary = BrowsedSummarySerializer()
    judgments = BrowsedJudgmentSerializer(many=True)


class ItemPageSerializer(serializers.Serializer):
    study = serializers.IntegerField()
    criterion = serializers.CharField(allow_null=True)
    criteria = serializers.ListField(child=serializers.CharField())
    filters = serializers.JSONField(help_text="The filters applied, normalised")
    comparisons = BrowsedComparisonRefSerializer(many=True)
    count = serializers.IntegerField(help_text="Items passing the filters")
    page = serializers.IntegerField()
    num_pages = serializers.IntegerField()
    page_size = serializers.IntegerField()
    items = BrowsedItemSerializer(many=True)
