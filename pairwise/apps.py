from django.apps import AppConfig


class PairwiseConfig(AppConfig):
    name = "pairwise"
    verbose_name = "Pairwise evaluation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.db.models.signals import post_migrate

        from pairwise.roles import ensure_groups

        post_migrate.connect(lambda **kw: ensure_groups(), sender=self, weak=False)
