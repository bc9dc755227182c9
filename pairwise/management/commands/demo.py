"""The main job in one command: train tiny CARE and baselines, generate with vLLM through a real
Celery worker, open a blind study, and serve it.

    python manage.py demo [--contexts 100] [--size xs] [--simulate-annotators]

Every step is cached or idempotent, so a re-run resumes where the last one stopped and is ready in
well under a minute once everything is trained and generated.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from evalsite.embedded import GaveUp, ProcessGroup, StartupError
from evalsite.logconfig import use_command_logging
from pairwise.management.commands.serve import (
    forget_heartbeat,
    start_services,
    stop_on_sigterm,
    wait_until_healthy,
)
from pairwise.models import Checkpoint, Study
from pairwise.services import access, accounts, generation, studies
from pairwise.services.checkpoints import register_checkpoint
from pairwise.services.contexts import import_contexts
from training.progress import ENV_VAR as PROGRESS_ENV
from training.progress import LiveLine, ProgressReader

REPO = Path(__file__).resolve().parents[3]
RECIPES = REPO / "training" / "recipes"
FIXTURES = REPO / "tests" / "fixtures"
BASELINES = (("ESConv", "esconv"), ("AugESC", "augesc"), ("ExTES", "extes"))
DATA_FILES = {"augesc": Path("augesc") / "augesc.txt", "extes": Path("extes") / "ExTES.json"}

GUIDELINES = """\
# How to judge

You will read the start of an emotional-support conversation between a **help-seeker** and a
**supporter**, and two candidate next replies from the supporter, **A** and **B**.

For each criterion, choose the better reply, or *Tie* when they are equally good (or equally bad):

- **Fluency**: which reply reads more naturally and correctly?
- **Identification**: which reply better recognises the seeker's situation and feelings?
- **Comforting**: which reply is more comforting and supportive?
- **Suggestion**: which reply offers more helpful, appropriate suggestions?
- **Overall**: which reply would you rather the seeker received?

The order of A and B is random. If you cannot judge an item (for example the text is unreadable),
use *Cannot judge* and say why.
"""


class StepFailed(Exception):
    def __init__(self, step: str, why: str, hint: str):
        super().__init__(f"step '{step}' failed: {why}\n  what to do: {hint}")


@dataclass
class Sizes:
    """Training lengths for the demo; `--fast` is the CI size.

    `max_new_tokens` is every reply's budget; CARE gets `reasoning_tokens` more for its chain
    (pairwise/services/sampling.py)."""

    enrich_limit: int
    sft_steps: int
    grpo_steps: int
    baseline_steps: int
    max_new_tokens: int
    # The tiny CARE model's chain plus reply is ~118 tokens on average, p90 ~145
    # (docs/training.md, care_sft_tiny.yaml), and GRPO trained it within 160 in all: 160 tokens
    # for the chain alone leaves room for the long tail without cutting the reply's budget.
    reasoning_tokens: int = 160
    # Models trained for a handful of steps (--fast) seldom stop by themselves: their study
    # shows replies cut at the length limit too, or it would have nothing to judge.
    allow_truncated: bool = False


# grpo_steps: after 60 steps 77-81% of the CARE outputs sampled at T 0.7 were clean chains,
# after 120 steps 99-100% (docs/training.md, section 12, "Demo"; issue #20, item 7).
FULL = Sizes(
    enrich_limit=1200, sft_steps=150, grpo_steps=120, baseline_steps=60, max_new_tokens=160
)
FAST = Sizes(
    enrich_limit=64,
    sft_steps=6,
    grpo_steps=1,
    baseline_steps=4,
    max_new_tokens=48,
    allow_truncated=True,
)


class Command(BaseCommand):
    help = "Set up and run the whole study on tiny models: train, register, generate, serve."

    def add_arguments(self, parser):
        parser.add_argument("--contexts", type=int, default=100, help="ESConv test contexts")
        parser.add_argument(
            "--size", default="xs", choices=["xs", "s", "m"], help="tiny-model size"
        )
        parser.add_argument(
            "--model",
            help="a real model folder or hub id to fine-tune "
            "instead of the tiny model (needs a GPU for anything big)",
        )
        parser.add_argument("--backend", default="vllm", choices=["vllm", "hf"])
        parser.add_argument(
            "--fast", action="store_true", help="a few training steps only (CI and smoke tests)"
        )
        parser.add_argument(
            "--simulate-annotators",
            action="store_true",
            help="fill 80%% of the items with simulated judgments",
        )
        parser.add_argument("--preference", type=float, default=0.8)
        parser.add_argument("--agreement", type=float, default=0.8)
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--no-serve",
            action="store_true",
            help="stop after generation (do not keep the site running)",
        )

    # --- progress --------------------------------------------------------------------------

    def step(self, n: int, total: int, title: str, log: Path | str | None = None):
        """A stage: its title, where its log is, and how long it took."""
        outer = self

        class _Step:
            def __enter__(self):
                self.t0 = time.monotonic()
                outer.stdout.write(f"[{n}/{total}] {title} …")
                outer.note(f"log: {log or outer.log_file}")
                outer.stdout.flush()
                return self

            def __exit__(self, exc_type, exc, tb):
                took = time.monotonic() - self.t0
                total_s = time.monotonic() - outer.t_start
                if exc_type is None:
                    outer.stdout.write(f"      done in {took:.1f}s (elapsed {total_s:.0f}s)")
                return False

        return _Step()

    def note(self, text: str) -> None:
        self.stdout.write(f"      {text}")

    # --- main ----------------------------------------------------------------------------------

    def handle(self, *args, **o):
        stop_on_sigterm()
        self.t_start = time.monotonic()
        self.sizes = FAST if o["fast"] else FULL
        self.root = settings.VAR_DIR / "demo" / (o["size"] + ("-fast" if o["fast"] else ""))
        self.logs = self.root / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        # the services' INFO records (the allocator's "leased item ...", one per lease) go to the
        # log file; the console keeps the stage lines, and everything at -v 2
        self.log_file = self.logs / "demo.log"
        use_command_logging(settings.LOGGING, log_file=self.log_file, verbosity=o["verbosity"])
        group = ProcessGroup(say=self.stdout.write, on_exit=forget_heartbeat)
        total = 9
        try:
            with self.step(1, total, "Migrating the database"):
                call_command("migrate", verbosity=0)
            with self.step(2, total, "Building the tiny base model", self.logs / "tiny.log"):
                base = self.base_model(o)
            train_logs = f"{self.logs}/enrich.log and train-<system>.log"
            with self.step(
                3, total, "Training CARE (enrich, SFT, GRPO) and three baselines", train_logs
            ):
                trained = self.train_all(base, o)
            with self.step(4, total, "Registering checkpoints"):
                checkpoints = self.register(trained, o["backend"])
            with self.step(5, total, f"Importing {o['contexts']} ESConv test contexts"):
                contexts, new, _ = import_contexts(
                    "esconv",
                    "test",
                    n=o["contexts"],
                    seed=13,
                    window=8,
                    data_dir=settings.EVALSITE_DATA_DIR,
                )
                self.note(f"{len(contexts)} contexts ({new} new)")
            with self.step(6, total, "Creating the study: CARE against each baseline, k = 3"):
                study = self.study(checkpoints, contexts, o)
            service_logs = settings.VAR_DIR / "log"
            with self.step(7, total, "Starting the broker, workers and web server", service_logs):
                start_services(
                    group,
                    host=o["host"],
                    port=o["port"],
                    web=not o["no_serve"],
                    log_dir=service_logs,
                    out=_Indented(self.stdout),
                )
                report = wait_until_healthy()
                if not report["ok"]:
                    raise StepFailed("start services", f"unhealthy: {report}", "see var/log/*.log")
            generation_log = service_logs / "worker-generation.log"
            with self.step(
                8, total, "Generating every response through the Celery worker", generation_log
            ):
                self.generate(study)
            with self.step(9, total, "Creating demo accounts"):
                accounts = self.accounts(study)
                if o["simulate_annotators"]:
                    from pairwise.services.simulate import simulate

                    n = simulate(
                        study,
                        annotators=3,
                        preference=o["preference"],
                        agreement=o["agreement"],
                        share=0.8,
                    )
                    self.note(f"{n} simulated judgments (marked simulated everywhere)")
            self.summary(study, accounts, o)
            if o["no_serve"]:
                return
            self.stdout.write(self.style.SUCCESS("Ctrl-C stops the server and the worker."))
            while True:  # as `serve`: a child that dies is restarted, with backoff
                group.supervise()
                time.sleep(0.5)
        except GaveUp as exc:
            raise CommandError(f"serve: {exc}") from None
        except StepFailed as exc:
            raise CommandError(str(exc)) from None
        except StartupError as exc:
            raise CommandError(f"step 'start services' failed: {exc}") from None
        except KeyboardInterrupt:
            self.stdout.write("stopping the server and the worker …")
        finally:
            group.stop()

    # --- steps -------------------------------------------------------------------------------

    def run_module(self, name: str, module: str, args: list[str], label: str = "") -> None:
        """Run `python -m module args`, its output to logs/<name>.log; with a `label`, a training
        run: its progress (training/progress.py) is shown as one live line."""
        log = self.logs / f"{name}.log"
        progress = self.logs / f"{name}.progress.jsonl"
        progress.unlink(missing_ok=True)
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
            "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
            **({PROGRESS_ENV: str(progress)} if label else {}),
        }
        if label:  # the stage's title named the other logs
            self.note(f"log: {log}")
        live = LiveLine(label, _Raw(self.stdout)) if label else None
        reader = ProgressReader(progress)
        with open(log, "w") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", module, *args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
            try:
                while proc.poll() is None:
                    time.sleep(0.5)
                    live = self.show_progress(reader, live)
                self.show_progress(reader, live)
            finally:
                if proc.poll() is None:  # Ctrl-C: as subprocess.run does
                    proc.kill()
                proc.wait()
                if live is not None:
                    live.close()
        if proc.returncode != 0:
            tail = "\n".join(log.read_text(errors="replace").splitlines()[-15:])
            raise StepFailed(
                name,
                f"exit status {proc.returncode}; last lines of {log}:\n{tail}",
                f"read {log}; fix the cause and run the command again (finished steps are kept)",
            )

    def show_progress(self, reader: ProgressReader, live: LiveLine | None) -> LiveLine | None:
        """Show the records the run wrote since the last call; a malformed one stops the live
        line (not the run), saying why."""
        if live is None:
            return None
        try:
            for record in reader.read():
                live.update(record)
        except ValueError as exc:
            live.close()
            self.note(f"progress not shown: {reader.path}: {exc}")
            return None
        return live

    def base_model(self, o) -> str:
        if o["model"]:
            self.note(f"using {o['model']} instead of the tiny model")
            return o["model"]
        out = settings.EVALSITE_MODELS_DIR / f"tiny-{o['size']}"
        self.run_module("tiny", "training.tiny", ["--out", str(out), "--size", o["size"]])
        return str(out)

    def trained(self, out: Path) -> bool:
        return (out / "lineage.json").exists() and (out / "config.json").exists()

    def train_all(self, base: str, o) -> dict[str, Path]:
        s, ck = self.sizes, self.root / "checkpoints"
        common = ["--model_name_or_path", base, "--report_to", "none", "--save_strategy", "no"]
        outs: dict[str, Path] = {}
        enriched = self.root / "care_offline.jsonl"
        if not self.trained(ck / "care-sft"):
            self.note("enriching ESConv train offline (reasoning chains from the annotations)")
            self.run_module(
                "enrich",
                "training.enrich",
                [
                    "--config",
                    str(RECIPES / "enrich_offline.yaml"),
                    "--limit",
                    str(s.enrich_limit),
                    "--out",
                    str(enriched),
                ],
            )
        self.train_one(
            "CARE-SFT",
            "training.sft",
            "care_sft_tiny.yaml",
            ck / "care-sft",
            [*common, "--train_file", str(enriched), "--max_steps", str(s.sft_steps)],
        )
        # GRPO starts from the SFT checkpoint, so its base model is that folder
        grpo_common = [str(ck / "care-sft") if a == base else a for a in common]
        self.train_one(
            "CARE-SFT-RL",
            "training.grpo",
            "care_grpo_tiny.yaml",
            ck / "care-sft-rl",
            [
                *grpo_common,
                "--max_steps",
                str(s.grpo_steps),
                "--limit",
                str(8 * max(s.grpo_steps, 2)),
            ],
        )
        outs["CARE-SFT"], outs["CARE-SFT-RL"] = ck / "care-sft", ck / "care-sft-rl"
        for system, dataset in BASELINES:
            extra = ["--max_steps", str(s.baseline_steps)]
            data_dir = Path(settings.EVALSITE_DATA_DIR)
            if dataset in DATA_FILES and not (data_dir / DATA_FILES[dataset]).exists():
                extra += ["--data_dir", str(FIXTURES / dataset)]
                self.note(
                    f"{system}: {data_dir / DATA_FILES[dataset]} is not present, so this "
                    f"baseline trains on the small bundled fixture ({FIXTURES / dataset})"
                )
            out = ck / f"baseline-{dataset}"
            self.train_one(
                system, "training.sft", f"baseline_{dataset}_tiny.yaml", out, common + extra
            )
            outs[system] = out
        return outs

    def train_one(self, name, module, recipe, out: Path, args: list[str]) -> None:
        if self.trained(out):
            self.note(f"{name}: cached in {out}")
            return
        t0 = time.monotonic()
        stage = module.rsplit(".", 1)[-1]  # sft, grpo
        self.run_module(
            f"train-{name}",
            module,
            ["--config", str(RECIPES / recipe), "--output_dir", str(out), *args],
            label=f"{stage} {name.split('-')[0].lower()}",
        )
        self.note(f"{name}: trained in {time.monotonic() - t0:.0f}s -> {out}")

    def register(self, trained: dict[str, Path], backend: str) -> dict[str, Checkpoint]:
        out = {}
        for name, path in trained.items():
            found = Checkpoint.objects.filter(path=str(path.resolve())).first()
            if found is None:
                found = register_checkpoint(path, system=name, backend=backend)
                self.note(f"registered {found.label}")
            out[name] = found
        return out

    def study(self, checkpoints, contexts, o) -> Study:
        name = f"CARE demo ({o['size']}{', fast' if o['fast'] else ''}, {len(contexts)} contexts)"
        study = Study.objects.filter(name=name).first()
        if study is not None:
            self.note(f"study {study.pk} exists: {study.status}")
            return study
        care = checkpoints["CARE-SFT-RL"]
        study = studies.create_study(
            name,
            contexts=contexts,
            guidelines=GUIDELINES,
            overlap_k=3,
            pairs=[(care, checkpoints[system]) for system, _ in BASELINES],
            sampling={
                "temperature": 0.7,
                "top_p": 0.9,
                "max_new_tokens": self.sizes.max_new_tokens,
                "reasoning_tokens": self.sizes.reasoning_tokens,
            },
            allow_truncated=self.sizes.allow_truncated,
        )
        self.note(f"study {study.pk}: {len(contexts)} contexts x 3 comparisons")
        return study

    def generate(self, study: Study) -> None:
        from tqdm import tqdm

        if study.status != Study.Status.CLOSED:
            studies.open_study(study)
        progress = generation.generation_progress(study)
        bar = tqdm(
            total=progress["needed"],
            initial=progress["generated"],
            unit="resp",
            desc="      responses",
            file=sys.stdout,
            # off a terminal (a pipe, a CI log) a line every 10 s, not a redraw every second
            mininterval=1 if sys.stdout.isatty() else 10,
        )
        while progress["batches_remaining"]:
            time.sleep(1)
            progress = generation.generation_progress(study)
            bar.update(progress["generated"] - bar.n)  # drawn at most every mininterval
        bar.n = progress["generated"]
        bar.close()
        if progress["failed"]:
            errors = "; ".join(f["error"][:200] for f in progress["failed"][:3])
            raise StepFailed(
                "generate",
                f"{len(progress['failed'])} batches failed: {errors}",
                "see var/log/worker-generation.log; retry failed batches from the "
                "admin or run the command again",
            )
        study.refresh_from_db()
        overview = studies.study_overview(study)
        self.note(
            f"{progress['generated']} responses, {overview['items_total']} blind items; "
            f"{overview['unusable_responses']} responses without a clean reply, "
            f"{overview['truncated_responses']} cut at the length limit"
            f"{' (shown: --fast)' if study.allow_truncated else ''} and "
            f"{overview['identity_flagged']} naming a system left out"
        )

    def accounts(self, study: Study) -> list[tuple[str, str, str]]:
        """admin, researcher, and as many annotators as the study needs for no repeat exposure
        (annotator1-9 for 3 comparisons at k = 3); passwords kept in var/ so a re-run prints
        the same."""
        from pairwise.services.exposure import min_pool

        pool = max(3, min_pool(study))
        path = self.root.parent / "accounts.json"
        saved = json.loads(path.read_text()) if path.exists() else {}
        User = get_user_model()
        rows = []
        for username, role in [
            ("admin", "admin"),
            ("researcher", "researcher"),
            *[(f"annotator{i}", "annotator") for i in range(1, pool + 1)],
        ]:
            password = saved.get(username) or secrets.token_urlsafe(9)
            user, _ = User.objects.get_or_create(username=username)
            user.set_password(password)
            user.is_staff = user.is_superuser = role == "admin"
            user.save()
            # scripted accounts (the password is printed and kept; browser tests and demos log
            # in with it): never sent to the first-login password page, unlike invited ones
            accounts.no_password_change(user)
            user.groups.add(Group.objects.get_or_create(name=role)[0])
            saved[username] = password
            rows.append((username, role, password))
        # per-study access: the researcher owns the study, the annotators are its members
        owner = User.objects.get(username="researcher")
        if not study.members.filter(role="owner").exists():
            access.make_owner(study, owner)
        names = [u for u, role, _ in rows if role == "annotator"]
        access.add_members(study, names, "annotator", by=owner)
        path.write_text(json.dumps(saved, indent=1))
        path.chmod(0o600)
        return rows

    def invite_line(self, study: Study, base: str) -> list[str]:
        """The study's invite link (made once): anyone who follows it becomes an annotator."""
        if study.status == Study.Status.CLOSED:
            return []
        invite = study.invites.filter(revoked_at__isnull=True, expires_at__isnull=True).first()
        owner = study.members.filter(role="owner").select_related("user").first()
        invite = invite or access.create_invite(study, owner.user if owner else None)
        return [f"  invite    {base}{reverse('join', args=[invite.token])}"]

    def summary(self, study: Study, accounts, o) -> None:
        base = f"http://{o['host']}:{o['port']}"
        took = time.monotonic() - self.t_start
        lines = [
            "",
            f"Ready in {took:.0f}s. Study {study.pk}: {study.name}",
            "",
            f"  annotate  {base}/study/{study.pk}/annotate/",
            f"  results   {base}/studies/{study.pk}/results/",
            f"  admin     {base}/admin/",
            f"  API docs  {base}/api/docs/",
            *self.invite_line(study, base),
            "",
            "  accounts (also in var/demo/accounts.json):",
            *[f"    {u:<11} {r:<10} {p}" for u, r, p in accounts],
            "",
        ]
        self.stdout.write("\n".join(lines))


class _Raw:
    """Django's OutputWrapper without its line ending, for a line rewritten in place."""

    def __init__(self, wrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write(text, ending="")

    def flush(self) -> None:
        self.wrapper.flush()

    def isatty(self) -> bool:
        return self.wrapper.isatty()


class _Indented:
    """`start_services`' lines (each child's pid and log) indented under the stage title."""

    def __init__(self, wrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> None:
        self.wrapper.write("      " + text.rstrip("\n"))
