"""Judgment.study: the item's study, kept on the judgment, filled in for existing judgments."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def fill_study(apps, schema_editor):
    Judgment = apps.get_model("pairwise", "Judgment")
    ComparisonItem = apps.get_model("pairwise", "ComparisonItem")
    Judgment.objects.filter(study__isnull=True).update(
        study_id=models.Subquery(
            ComparisonItem.objects.filter(pk=models.OuterRef("item_id")).values("study_id")[:1]
        )
    )


class Migration(migrations.Migration):
    dependencies = [
        ("pairwise", "0002_study_open_items"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="judgment",
            name="study",
            field=models.ForeignKey(
                null=True,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="judgments",
                to="pairwise.study",
            ),
        ),
        migrations.RunPython(fill_study, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="judgment",
            name="study",
            field=models.ForeignKey(
                editable=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="judgments",
                to="pairwise.study",
            ),
        ),
        migrations.AlterField(
            model_name="judgment",
            name="annotator",
            field=models.ForeignKey(
                db_index=False,
                on_delete=django.db.models.deletion.PROTECT,
                related_name="judgments",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddIndex(
            model_name="judgment",
            index=models.Index(fields=["annotator", "study"], name="judgment_by_annotator"),
        ),
    ]
