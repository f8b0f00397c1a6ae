"""A fuzzing campaign: a time budget, a seed, N parallel children, a persistent corpus, a report.

    Campaign(corpus="corpus/", out="report/", seed=1, budget_s=600, jobs=2).run()

The loop: pick an input from the queue (or generate one), mutate it (program or pipeline, Tzer's
interleaving), run it in a forked child (``isolate.Pool``), read its outcome and feedback (branch arcs
of einc's code, TVM pass-change signatures, outcome keys).  An input that adds feedback joins the
queue (``corpus/queue``); an outcome that is a bug and whose signature is new is reduced and saved as
``corpus/regressions/<id>/``.  "New" means no ``open`` or ``workaround`` folder has its signature (those
are known bugs, counted in ``known_hits``); a ``fixed`` folder's signature met again is a new finding,
its folder naming the fixed one (``same_signature_as``).

In coverage mode an input is fresh or a mutant by a two-armed bandit (each arm's decayed rate of
inputs that added feedback); a queue entry to mutate is drawn by energy (its new feedback, decayed at
each draw) over its size.  ``corpus/queue/`` is git-ignored: a fresh clone starts from ``seeds/``.
``mode`` selects the ablation variant: ``coverage`` (the above), ``nofeedback`` (mutants of the seeds
only; the queue never grows) and ``generation`` (every input freshly generated).

State (counters, RNG state, interleaving, findings, the coverage timeline; the seen feedback in
``coverage.json``) is checkpointed atomically to ``out/state.json`` every ``checkpoint_s`` seconds and
after every queue addition or finding, so a campaign killed at any moment resumes with
``Campaign(...).run()`` on the same ``out`` and loses at most the executions since the last checkpoint
(their inputs, if they added feedback, are already in the queue).  The time budget is the total over
all resumed runs.
"""
from __future__ import annotations

import json
import math
import os
import random
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import corpus as _corpus
from .case import Case
from .harness import (coverage_busy, execute, outcome_from_child, start_parent_coverage, stop_parent_coverage,
                      warm_up)
from .isolate import Pool
from .mutate import Interleave, mutate_case, random_pipeline
from .gen import gemm_program, grammar_text, program_from_testing, random_program, text_with_ellipsis
from .outcome import Outcome

STATE_VERSION = 1


@dataclass
class Finding:
    id: str
    signature: str
    symptom: str
    stage: str
    message: str
    path: str
    new: bool
    elapsed_s: float
    execs: int
    reduce: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return dict(self.__dict__)


class Campaign:
    def __init__(self, corpus: str | os.PathLike = "corpus", out: str | os.PathLike = "report", *, seed: int = 0,
                 budget_s: float = 60.0, jobs: int = 1, target: str = "llvm", mode: str = "coverage",
                 case_timeout: float = 30.0, reduce_budget_s: float = 60.0, patience: int = 20,
                 checkpoint_s: float = 2.0, faults: tuple = (), stop_on: Callable[["Campaign", Outcome], bool] | None = None,
                 progress: bool = True, save_findings: bool = True, grammar_rate: float = 0.03,
                 max_execs: int | None = None, fresh_rate: float | None = None, cuda_emu_share: float | None = None):
        if mode not in ("coverage", "nofeedback", "generation"):
            raise ValueError(f"unknown mode {mode!r}")
        self.corpus, self.out = Path(corpus), Path(out)
        self.seed, self.budget_s, self.jobs, self.target, self.mode = seed, budget_s, max(1, jobs), target, mode
        self.case_timeout, self.reduce_budget_s, self.checkpoint_s = case_timeout, reduce_budget_s, checkpoint_s
        self.faults, self.stop_on, self.progress, self.save_findings = tuple(faults), stop_on, progress, save_findings
        self.grammar_rate, self.max_execs = grammar_rate, max_execs
        if target not in ("llvm", "interp", "cuda-emu"):
            raise ValueError(f"unknown target {target!r}")
        # share of fresh inputs sent to the cuda-emu target (einc's CUDA code run by the CPU emulator):
        # by default a fifth of an llvm campaign's, when a host C++ compiler is there to build it
        from einc.lowering.fuzz_hooks import has_cxx

        if target == "cuda-emu":
            if not has_cxx():
                raise ValueError("the cuda-emu target needs a C++ compiler (g++, c++ or clang++) on PATH")
            cuda_emu_share = 1.0
        elif target == "interp":
            cuda_emu_share = 0.0
        elif cuda_emu_share is None:
            cuda_emu_share = 0.2 if has_cxx() else 0.0
        elif cuda_emu_share > 0 and not has_cxx():
            cuda_emu_share = 0.0
        self.cuda_emu_share = min(1.0, max(0.0, float(cuda_emu_share)))
        self.target_counts: dict[str, dict[str, int]] = {}  # target -> outcome key -> executions
        # share of fresh inputs among the mutants.  ``None`` in coverage mode: adaptive, a two-armed
        # bandit between generating and mutating, each arm scored by its (decayed) rate of inputs that
        # added feedback, the share kept within [0.2, 0.8] (a fixed 0.2 lost to generation-only in
        # bench/fuzz_ablation.py: with the budgets CI affords, fresh programs often find more)
        self.fresh_rate = fresh_rate if fresh_rate is not None or mode == "coverage" else 0.2
        self.arms = {"generate": [0.0, 0.0], "mutate": [0.0, 0.0]}  # decayed [gains, tries]
        self.energy: dict[str, float] = {}  # queue entry -> how much it deserves mutating (AFL-style)
        self.rng = random.Random(seed)
        self.inter = Interleave(patience)
        self.execs = 0
        self.elapsed_prev = 0.0
        self.t_start = time.monotonic()
        self.counts: dict[str, int] = {}
        self.timeline: list[list] = []
        self.findings: list[Finding] = []
        self.flaky: dict[str, int] = {}  # signatures seen once that did not reproduce
        self.known_hits: dict[str, int] = {}  # bugs met again whose signature is already a regression folder
        self.arcs: set = set()
        self.feats: set = set()
        self.queue: dict[str, Case] = {}
        self.seeds: list[Case] = []
        self.known: dict[str, str] = {}  # signatures not reported again: open and workaround folders, this campaign's
        self.fixed: dict[str, str] = {}  # signatures of fixed folders (met again: a new finding that says so)
        self.runs = 0
        self.stopped_by = ""
        self._interrupted = 0  # the signal that asked the campaign to stop (the reducer reads it)
        self.stopped_at_s: float | None = None
        self.stopped_at_execs: int | None = None
        self._last_ckpt = 0.0
        self._dirty = False
        self.findings_dirty = False

    # ----------------------------------------------------------------------------------- time and state

    @property
    def elapsed(self) -> float:
        return self.elapsed_prev + (time.monotonic() - self.t_start)

    def _state(self) -> dict:
        st = self.rng.getstate()
        return {
            "version": STATE_VERSION, "seed": self.seed, "budget_s": self.budget_s, "mode": self.mode,
            "target": self.target, "elapsed_s": round(self.elapsed, 3), "execs": self.execs, "runs": self.runs,
            "rng": [st[0], list(st[1]), st[2]], "interleave": self.inter.state(), "counts": self.counts,
            "timeline": self.timeline, "findings": [f.to_json() for f in self.findings],
            "queue": sorted(self.queue), "flaky": self.flaky, "known_hits": self.known_hits,
            "arms": self.arms, "energy": self.energy, "target_counts": self.target_counts,
        }

    def checkpoint(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        _corpus.atomic_write(self.out / "coverage.json",
                             json.dumps({"arcs": sorted(map(list, self.arcs)), "features": sorted(self.feats)}))
        _corpus.atomic_write_json(self.out / "state.json", self._state())
        self._last_ckpt = time.monotonic()
        self._dirty = False

    def _resume(self) -> bool:
        path = self.out / "state.json"
        if not path.exists():
            return False
        st = json.loads(path.read_text())
        if st.get("version") != STATE_VERSION:
            return False
        differ = [f"{k} {st.get(k)!r} (now {getattr(self, k)!r})" for k in ("seed", "target", "mode")
                  if st.get(k, getattr(self, k)) != getattr(self, k)]
        if differ:
            from einc.errors import UsageError

            raise UsageError(f"{self.out} holds a campaign of another {', '.join(differ)}: resuming it would mix "
                             "the two; give that campaign's settings to go on with it, --fresh to start over there, "
                             "or another --out")
        self.elapsed_prev = float(st["elapsed_s"])
        self.execs = int(st["execs"])
        self.runs = int(st.get("runs", 0))
        r = st["rng"]
        self.rng.setstate((r[0], tuple(r[1]), r[2]))
        self.inter = Interleave.from_state(st["interleave"])
        self.counts = dict(st["counts"])
        self.timeline = list(st["timeline"])
        self.findings = [Finding(**f) for f in st["findings"]]
        self.flaky = dict(st.get("flaky", {}))
        self.known_hits = dict(st.get("known_hits", {}))
        self.arms = {k: list(v) for k, v in st.get("arms", self.arms).items()}
        self.energy = dict(st.get("energy", {}))
        self.target_counts = {t: dict(c) for t, c in st.get("target_counts", {}).items()}
        cov_path = self.out / "coverage.json"
        if cov_path.exists():
            cj = json.loads(cov_path.read_text())
            self.arcs = {tuple(a) for a in cj["arcs"]}
            self.feats = set(cj["features"])
        return True

    def skipped_seeds(self) -> list[str]:
        """``name: why`` of each seed in the corpus that cannot be read (a campaign runs without them)."""
        skipped: list[str] = []
        _corpus.load_seeds(self.corpus, skipped)
        return skipped

    # ----------------------------------------------------------------------------------- inputs

    def _fresh_target(self) -> str:
        """The target of a fresh input: ``cuda-emu`` for ``cuda_emu_share`` of them, else the campaign's."""
        share = self.cuda_emu_share
        if share >= 1.0:
            return "cuda-emu"
        if share > 0.0 and self.rng.random() < share:
            return "cuda-emu"
        return self.target

    def _fresh(self) -> Case:
        rng = self.rng
        target = self._fresh_target()
        if rng.random() < self.grammar_rate:
            try:
                return Case(None, random_pipeline(rng, target), src=grammar_text(rng.randrange(2**31)),
                            seed=rng.randrange(2**31))
            except Exception:  # noqa: BLE001 - hypothesis missing: fall through to the typed generator
                pass
        if target == "cuda-emu" and rng.random() < 0.35:  # extents the GPU rules tile (gen.gemm_program)
            return Case(gemm_program(rng), random_pipeline(rng, target), seed=rng.randrange(2**31))
        prog = program_from_testing(rng.randrange(2**31)) if rng.random() < 0.3 else None
        prog = prog or random_program(rng)
        # sometimes as .ein text with an ellipsis, parsed in the child (the frontend gets fuzzed too)
        src = text_with_ellipsis(prog, rng) if rng.random() < 0.15 else None
        return Case(prog, random_pipeline(rng, target), src=src, seed=rng.randrange(2**31))

    def _next_case(self) -> tuple[Case, str]:
        rng = self.rng
        if self.mode == "generation":
            return self._fresh(), "generate"
        pool = list(self.queue.values()) if self.mode == "coverage" else self.seeds
        if not pool or rng.random() < self.fresh_share():
            return self._fresh(), "generate"
        if self.mode == "coverage":
            base = self._pick_energy(rng)
        else:
            base = pool[rng.randrange(len(pool))]
        if base.program is None:
            return self._fresh(), "generate"
        mode = self.inter.mode if self.mode == "coverage" else rng.choice(("program", "pipeline"))
        case, how = mutate_case(base, rng, mode)
        if self.target == "interp" and case.pipeline.target != "interp":
            case = case.replace(pipeline=case.pipeline.replace(target="interp", tir=(), sched=(), config=(),
                                                               gpu_knobs=()))
        elif self.target == "cuda-emu" and case.pipeline.target != "cuda-emu":
            case = case.replace(pipeline=case.pipeline.replace(target="cuda-emu", tir=(), sched=(), config=(),
                                                               base="einc"))
        return case, how

    def fresh_share(self) -> float:
        """The probability that the next input is freshly generated rather than a mutant."""
        if self.fresh_rate is not None:
            return self.fresh_rate
        (gg, gt), (mg, mt) = self.arms["generate"], self.arms["mutate"]
        rg, rm = (gg + 1) / (gt + 2), (mg + 1) / (mt + 2)
        return min(0.8, max(0.2, rg / (rg + rm)))

    def _pick_energy(self, rng: random.Random) -> Case:
        """A queue entry drawn with weight energy / size: entries that brought much new feedback are
        mutated more, each draw lowers an entry's energy (so no entry starves the others), and small
        inputs are favoured (mutants of big programs compile slowly and grow further)."""
        keys = list(self.queue)
        def cost(c: Case) -> float:
            structure, elems, pipe = c.size
            return 1.0 + 0.05 * (structure + pipe) + 0.1 * math.log2(1 + elems)

        weights = [self.energy.get(d, 1.0) / cost(self.queue[d]) for d in keys]
        d = rng.choices(keys, weights=weights)[0]
        self.energy[d] = max(0.05, self.energy.get(d, 1.0) * 0.85)
        return self.queue[d]

    # ----------------------------------------------------------------------------------- results

    def _record(self, case: Case, how: str, outcome: Outcome, feats: set, arcs: set, stderr: str) -> None:
        self.execs += 1
        self.counts[outcome.key] = self.counts.get(outcome.key, 0) + 1
        per = self.target_counts.setdefault(case.pipeline.target, {})
        per[outcome.key] = per.get(outcome.key, 0) + 1
        new_arcs = arcs - self.arcs
        new_feats = feats - self.feats
        gained = bool(new_arcs or new_feats)
        self.arcs |= arcs
        self.feats |= feats
        if self.mode == "coverage":
            arm = self.arms["generate" if how == "generate" else "mutate"]
            for a in self.arms.values():  # decay: the rates follow the campaign as it saturates
                a[0] *= 0.995
                a[1] *= 0.995
            arm[0] += gained
            arm[1] += 1
            self.inter.record(gained)
            if gained and case.program is not None:
                d = _corpus.save_queue_entry(self.corpus, case, {"how": how, "new_arcs": len(new_arcs),
                                                                  "new_features": sorted(new_feats)[:20],
                                                                  "outcome": outcome.key})
                self.queue[d] = case
                self.energy[d] = 1.0 + min(len(new_arcs), 60) / 10 + min(len(new_feats), 10) / 2
                self._dirty = True
        if not self.stopped_by and self.stop_on is not None and self.stop_on(self, outcome):
            self.stopped_by = outcome.key
            self.stopped_at_s = round(self.elapsed, 2)
            self.stopped_at_execs = self.execs
        if outcome.is_bug and (self.save_findings or not self.stopped_by):
            self._finding(case, outcome, stderr)

    def _finding(self, case: Case, outcome: Outcome, stderr: str) -> None:
        sig = outcome.signature
        if sig in self.known:
            self.known_hits[sig] = self.known_hits.get(sig, 0) + 1
            return
        from .harness import run_case_isolated
        from .reduce import reduce

        # a finding must reproduce before it is reduced and saved (a hang under load, say, may not)
        again = run_case_isolated(case, timeout=self.case_timeout, coverage=False, faults=self.faults)[0]
        if again.signature != sig:
            self.flaky[sig] = self.flaky.get(sig, 0) + 1
            self._dirty = True
            return
        info: dict = {}
        reduced = case
        if self.reduce_budget_s > 0:
            def test(c: Case) -> Outcome:
                return run_case_isolated(c, timeout=self.case_timeout, coverage=False, faults=self.faults)[0]

            max_tests = 6 if outcome.symptom == "timeout" else 200
            reduced, info = reduce(case, test, sig, max_tests=max_tests, budget_s=self.reduce_budget_s,
                                   stop=lambda: bool(self._interrupted))
        path = ""
        fid = _corpus.finding_id(outcome, reduced)
        if sig in self.fixed:  # a fixed bug's signature again: the fix regressed, or did not cover this case
            info = {**info, "same_signature_as": self.fixed[sig]}
        if self.save_findings:
            folder = _corpus.save_regression(self.corpus, reduced, outcome, log=stderr,
                                             extra_meta={"campaign_seed": self.seed, "reduce": info,
                                                         "original_case": case.to_json(), "faults": list(self.faults)})
            path = str(folder) if folder else str(_corpus.regressions_dir(self.corpus) / fid)
        self.known[sig] = fid
        self.findings.append(Finding(fid, sig, outcome.symptom, outcome.stage, outcome.message[:300], path, True,
                                     round(self.elapsed, 2), self.execs, info))
        self._dirty = self.findings_dirty = True

    # ----------------------------------------------------------------------------------- the loop

    def _sample_timeline(self) -> None:
        self.timeline.append([round(self.elapsed, 2), self.execs, len(self.arcs), len(self.feats), len(self.findings)])

    def run(self) -> dict:
        with _corpus.locked(self.out):
            return self._run()

    def _run(self) -> dict:
        self._resume()
        self.runs += 1
        warm_up(self.target, cuda=self.cuda_emu_share > 0)  # imports TVM once (seconds): not counted in the budget
        coverage_shared = start_parent_coverage()
        self.t_start = time.monotonic()
        self.seeds = _corpus.load_seeds(self.corpus)
        if self.target in ("interp", "cuda-emu"):
            self.seeds = [c.replace(pipeline=c.pipeline.replace(target=self.target, tir=(), sched=(), config=()))
                          for c in self.seeds]
        if self.mode == "coverage":
            self.queue = _corpus.load_queue(self.corpus)
            if self.target in ("interp", "cuda-emu"):
                self.queue = {d: c for d, c in self.queue.items() if c.pipeline.target == self.target}
            else:  # an llvm campaign: llvm entries, and cuda-emu ones when it sends cases there
                keep = {"llvm", "cuda-emu"} if self.cuda_emu_share > 0 else {"llvm"}
                self.queue = {d: c for d, c in self.queue.items() if c.pipeline.target in keep}
            if not self.queue:
                for c in self.seeds:
                    self.queue[c.digest] = c
        self.known = _corpus.known_signatures(self.corpus)
        self.fixed = _corpus.known_signatures(self.corpus, ("fixed",))
        for f in self.findings:
            self.known.setdefault(f.signature, f.id)
        pool = Pool(self.jobs)
        interrupted = 0  # the signal that stopped the campaign
        old_handlers = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}

        def _stop(signum, frame):
            nonlocal interrupted
            interrupted = self._interrupted = signum
            # not from inside coverage's tracer callbacks: raised between their lock's acquire and
            # release, it left the lock held and the report's first traced call waited on it forever
            # (a campaign hung after SIGTERM); the loop and the reducer then stop at their next turn
            if not coverage_busy():
                raise KeyboardInterrupt

        for n in old_handlers:
            signal.signal(n, _stop)
        prog_ui = _Progress(self) if self.progress else None
        if not self.timeline:
            self._sample_timeline()
        last_sample = time.monotonic()
        try:
            while True:
                if interrupted:  # a signal that came while coverage was busy
                    raise KeyboardInterrupt
                done = self.elapsed >= self.budget_s or self.stopped_by or \
                    (self.max_execs is not None and self.execs >= self.max_execs)
                while not done and pool.free > 0:
                    case, how = self._next_case()
                    pool.submit(execute, (case,), {"coverage": True, "faults": self.faults},
                                timeout=self.case_timeout, tag=(case, how))
                if done and not pool.running:
                    break
                for (case, how), res in pool.wait(0.25):
                    outcome, feats, arcs = outcome_from_child(res)
                    self._record(case, how, outcome, feats, arcs, res.stderr)
                now = time.monotonic()
                if now - last_sample >= max(1.0, self.budget_s / 200):
                    self._sample_timeline()
                    last_sample = now
                # queue entries and findings are on disk the moment they exist; the counters follow
                # within checkpoint_s (writing the whole state after every gain would cost more than runs)
                if now - self._last_ckpt >= self.checkpoint_s or (self._dirty and self.findings_dirty):
                    self.checkpoint()
                    self.findings_dirty = False
                if prog_ui:
                    prog_ui.update()
        except KeyboardInterrupt:
            interrupted = interrupted or signal.SIGINT
        finally:
            # a second Ctrl-C (or timeout's second signal to the group) must not lose the report
            for n in old_handlers:
                signal.signal(n, signal.SIG_IGN)
            try:
                pool.shutdown()
                if prog_ui:
                    prog_ui.close()
                self._sample_timeline()
                self.checkpoint()
                stop_parent_coverage()
                extra = {"interrupted": True, "signal": int(interrupted)} if interrupted else {"interrupted": False}
                summary = self.write_report(coverage_shared=coverage_shared, **extra)
            finally:
                for n, h in old_handlers.items():
                    signal.signal(n, h)
        return summary

    # ----------------------------------------------------------------------------------- report

    def summary(self, **extra) -> dict:
        el = max(self.elapsed, 1e-9)
        return {
            "version": STATE_VERSION, "seed": self.seed, "mode": self.mode, "target": self.target,
            "jobs": self.jobs, "budget_s": self.budget_s, "elapsed_s": round(el, 2), "runs": self.runs,
            "execs": self.execs, "execs_per_s": round(self.execs / el, 3),
            "coverage": {
                "branches": len(self.arcs), "features": len(self.feats),
                "timeline_fields": ["elapsed_s", "execs", "branches", "features", "findings"],
                "timeline": self.timeline,
            },
            "corpus_size": len(self.queue), "outcomes": dict(sorted(self.counts.items())),
            "cuda_emu_share": self.cuda_emu_share,
            "targets": {t: {"execs": sum(c.values()), "outcomes": dict(sorted(c.items()))}
                        for t, c in sorted(self.target_counts.items())},
            "findings": [f.to_json() for f in self.findings],
            "new_findings": sum(1 for f in self.findings if f.new), "flaky": self.flaky,
            "known_hits": self.known_hits,
            "stopped_by": self.stopped_by, "stopped_at_s": self.stopped_at_s, "stopped_at_execs": self.stopped_at_execs,
            **extra,
        }

    def write_report(self, **extra) -> dict:
        s = self.summary(**extra)
        self.out.mkdir(parents=True, exist_ok=True)
        _corpus.atomic_write_json(self.out / "summary.json", s)
        try:
            plot_coverage(self.timeline, self.out / "coverage.png", title=f"einc fuzz seed={self.seed} mode={self.mode}")
        except Exception:  # noqa: BLE001 - a missing matplotlib must not lose the summary
            pass
        return s


def plot_coverage(timeline: list, path, title: str = "einc fuzz") -> None:
    """Branches and features over time, as a PNG (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    ts = [r[0] for r in timeline]
    ax.plot(ts, [r[2] for r in timeline], label="einc branches (arcs)")
    ax.set_xlabel("seconds")
    ax.set_ylabel("branches")
    ax2 = ax.twinx()
    ax2.plot(ts, [r[3] for r in timeline], color="tab:orange", label="features (arcs + TVM pass changes)")
    ax2.set_ylabel("features")
    ax.set_title(title)
    fig.legend(loc="lower right")
    fig.tight_layout()
    from einc.fileio import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)


class _Progress:
    """A rich progress line refreshed by the loop itself (no refresh thread: the campaign forks)."""

    def __init__(self, camp: Campaign):
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.camp = camp
        self.console = Console(stderr=True)
        self.p = Progress(TextColumn("[bold]fuzz[/]"), BarColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
                          console=self.console, auto_refresh=False, transient=False)
        self.p.start()
        self.task = self.p.add_task("", total=camp.budget_s)
        self.last = 0.0

    def update(self) -> None:
        now = time.monotonic()
        if now - self.last < 0.5:
            return
        self.last = now
        c = self.camp
        el = max(c.elapsed, 1e-9)
        desc = (f"execs {c.execs} ({c.execs / el:.1f}/s)  branches {len(c.arcs)}  features {len(c.feats)}  "
                f"queue {len(c.queue)}  findings {len(c.findings)}  mode {c.inter.mode}")
        self.p.update(self.task, completed=min(el, c.budget_s), description=desc)
        self.p.refresh()

    def close(self) -> None:
        self.last = 0
        self.update()
        self.p.stop()
