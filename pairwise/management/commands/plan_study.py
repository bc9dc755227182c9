import json

from django.core.management.base import BaseCommand, CommandError

from pairwise.services import power
from pairwise.services.export import plan_defaults
from pairwise.services.studies import StudyError, find_study

# flag of each planner input, so an error names what the user typed
FLAGS = {
    "win_rate": "--win-rate",
    "tie_share": "--tie-share",
    "alpha": "--alpha",
    "power": "--power",
    "comparisons": "--comparisons",
    "k": "--k",
    "icc": "--icc",
}


class Command(BaseCommand):
    help = (
        "Items a pairwise study needs: one-sample test of the non-tied win rate against 0.5 "
        "(Cohen's h, statsmodels NormalIndPower, alpha / comparisons), then ties and the design "
        "effect of k annotators per item. Prints a summary, then one JSON line."
    )

    def add_arguments(self, parser):
        parser.add_argument("--win-rate", default=power.DEFAULT_WIN_RATE, help="expected P")
        parser.add_argument("--tie-share", default=power.DEFAULT_TIE_SHARE, help="expected T")
        parser.add_argument("--alpha", default=power.DEFAULT_ALPHA)
        parser.add_argument("--power", default=power.DEFAULT_POWER)
        parser.add_argument("--comparisons", default=None, help="M (default 1, or the study's)")
        parser.add_argument(
            "--k", default=None, help="annotators per item (default 1, or the study's)"
        )
        parser.add_argument("--icc", default=None, help="R (default 0, or the study's estimate)")
        parser.add_argument(
            "--from-study",
            default=None,
            metavar="STUDY",
            help="take k, M and the ICC (one-way ICC(1) within items) from this study; "
            "explicit flags win",
        )

    def handle(self, *args, **opts):
        given = {"comparisons": 1, "k": 1, "icc": 0.0}
        if opts["from_study"]:
            try:
                study = find_study(opts["from_study"])
            except StudyError as exc:
                raise CommandError(f"--from-study: {exc}") from None
            defaults = plan_defaults(study)
            if defaults["icc"] is None and opts["icc"] is None:
                self.stdout.write(
                    f"note: study {study.pk} has too few judged items for an ICC; R=0"
                )
                defaults["icc"] = 0.0
            given.update(defaults)
        inputs = {name: opts[name] if opts[name] is not None else given.get(name) for name in FLAGS}
        try:
            plan = power.plan_study(**inputs)
        except power.PlanError as exc:
            if exc.field not in FLAGS:  # not about one flag
                raise CommandError(str(exc)) from None
            raise CommandError(f"{FLAGS[exc.field]}: {exc.message}") from None
        self.stdout.write(
            f"win rate {plan.win_rate:g} vs 0.5: Cohen's h {plan.effect_size_h:.4f}; "
            f"alpha {plan.alpha:g} / {plan.comparisons} = {plan.alpha_per_comparison:.4g}, "
            f"power {plan.power:g}\n"
            f"non-tied judgments: {plan.non_tied_judgments}; with tie share {plan.tie_share:g}: "
            f"{plan.judgments} judgments\n"
            f"k = {plan.k}, ICC = {plan.icc:g}, design effect {plan.design_effect:.3f}: "
            f"{plan.items} items per comparison"
        )
        self.stdout.write(json.dumps(plan.counts()))
