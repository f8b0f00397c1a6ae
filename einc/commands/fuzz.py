"""``einc fuzz``: a coverage-guided fuzzing campaign over programs and pipelines.

    einc fuzz --time 10m --seed 1 --jobs 2 --corpus corpus/ --out report/
    einc fuzz --time 30s --target interp           # einc passes only, no TVM
    einc fuzz --time 60s --target cuda-emu         # einc's CUDA kernels, run on the CPU by the emulator
    einc fuzz --time 60s --cuda-emu-share 0        # llvm only (default: a fifth of cases on cuda-emu)
    einc fuzz --replay corpus/regressions           # re-run every regression folder (1 if one fails)
    einc fuzz --time 10m --max-execs 2000 --seed 3  # stop at whichever comes first

Findings are reduced and saved under ``CORPUS/regressions/<id>/``; ``OUT/summary.json`` and
``OUT/coverage.png`` report the campaign.  A campaign killed at any point resumes when run again with
the same ``--out`` (the time budget is the total) and the same seed, target and mode.  Exit status: 1
when the campaign found a new bug, 0 otherwise, 2 for a usage error, 128 + the signal's number when
interrupted (130 for Ctrl-C, 143 for SIGTERM).
"""
from __future__ import annotations

import argparse

HELP = "fuzz the compiler: programs x pass pipelines x schedules, checked against the interpreter"


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``10m``, ``1.5h`` -> seconds."""
    from einc.errors import ParseError, Span

    t = text.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600}
    try:
        if t and t[-1] in mult:
            val = float(t[:-1]) * mult[t[-1]]
        else:
            val = float(t)
    except ValueError:
        raise ParseError(f"bad duration {text!r}: write e.g. 90s, 10m or 1h", Span.at(text, 0, len(text), "--time")) from None
    if not 0 < val < float("inf"):
        raise ParseError(f"duration {text!r} must be positive and finite", Span.at(text, 0, len(text), "--time"))
    return val


def add_arguments(p: argparse.ArgumentParser) -> None:
    from einc.cli import count, positive_int, positive_seconds, seconds

    p.add_argument("--time", default="60s", metavar="DURATION", help="time budget: 90s, 10m, 1h (default 60s)")
    p.add_argument("--seed", type=int, default=0, help="campaign seed (default 0)")
    p.add_argument("--jobs", "-j", type=positive_int, default=1, help="cases run at once, each in its own child process")
    p.add_argument("--corpus", default="corpus", metavar="DIR", help="seeds/, queue/ and regressions/ (default corpus)")
    p.add_argument("--out", default="report", metavar="DIR", help="report and resumable state (default report)")
    p.add_argument("--target", choices=("llvm", "interp", "cuda-emu"), default="llvm",
                   help="llvm: compile with TVM for the CPU (plus --cuda-emu-share of cases on cuda-emu); interp: "
                        "einc passes only (no TVM); cuda-emu: only einc's CUDA build, its CUDA C run on the CPU by "
                        "einc's emulator (needs a C++ compiler, no GPU)")
    p.add_argument("--cuda-emu-share", type=float, default=None, metavar="F",
                   help="with --target llvm, the share of fresh cases sent to cuda-emu (default 0.2 when a C++ "
                        "compiler is on PATH, else 0; 0 turns it off)")
    p.add_argument("--mode", choices=("coverage", "nofeedback", "generation"), default="coverage",
                   help="coverage-guided (default), mutation without feedback, or generation only")
    p.add_argument("--max-execs", type=count, default=None, metavar="N",
                   help="stop after N cases in all (over resumed runs), or at --time, whichever comes first")
    p.add_argument("--case-timeout", type=positive_seconds, default=30.0, metavar="S",
                   help="seconds before a case is a hang (default 30)")
    p.add_argument("--reduce-time", type=seconds, default=60.0, metavar="S",
                   help="seconds to reduce each new finding (default 60; 0 saves findings unreduced)")
    p.add_argument("--fresh", action="store_true",
                   help="ignore the saved state in --out and start over (the corpus's queue/ is kept: it belongs "
                        "to the corpus, and every campaign on it starts from there)")
    p.add_argument("--fail-on", choices=("any", "einc"), default="any",
                   help="which new findings make the exit status 1: any (default), or only 'einc' ones — those that "
                        "show with einc's own compile path, no fuzzed TIR passes, schedule primitives or configs "
                        "(what a user can hit; the others are TVM robustness bugs, reported but not failing)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress display (there is none anyway when stderr is not a terminal, as in CI logs)")
    p.add_argument("--reduce", metavar="FOLDER",
                   help="reduce one regression folder again, in place (e.g. a case written by hand), for up to "
                        "--reduce-time seconds; the folder's recorded signature must still show")
    p.add_argument("--replay", metavar="DIR",
                   help="re-run every regression folder under DIR (a corpus, its regressions/, or one folder) and "
                        "print the outcomes")


def _say_if_spent(out, budget: float) -> None:
    """A campaign in ``out`` resumes, and ``--time`` is its total budget: say so when nothing is left."""
    import json
    import sys

    try:
        prev = float(json.loads((out / "state.json").read_text())["elapsed_s"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    if prev >= budget:
        print(f"einc fuzz: {out} holds a campaign that already ran {prev:.0f}s of its {budget:.0f}s budget, so "
              "nothing runs: a longer --time goes on from there, --fresh starts over", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import sys

    from einc.errors import ParseError, Unsupported, UsageError
    from einc.fileio import writable_dir

    if args.replay:
        return _replay(Path(args.replay))
    if args.reduce:
        return _reduce(Path(args.reduce), args.reduce_time)
    budget = parse_duration(args.time)
    share = getattr(args, "cuda_emu_share", None)
    if share is not None and not 0.0 <= share <= 1.0:
        raise ParseError(f"--cuda-emu-share must be between 0 and 1, got {share}")
    if share is not None and args.target != "llvm":
        print(f"einc fuzz: --cuda-emu-share applies to --target llvm only; a {args.target} campaign runs every "
              f"case on {args.target}", file=sys.stderr)
    if args.target == "cuda-emu":
        from einc.lowering.fuzz_hooks import has_cxx

        if not has_cxx():
            raise Unsupported("--target cuda-emu needs a C++ compiler (g++, c++ or clang++) on PATH")
    corpus = Path(args.corpus)
    if not corpus.is_dir():
        raise UsageError(f"no corpus folder {corpus}{' (it is a file)' if corpus.exists() else ''}: --corpus names "
                         "a folder holding seeds/ (and the campaign's queue/ and regressions/); make an empty one "
                         "to start without seeds")
    out = writable_dir(args.out)  # before TVM warms up: an unwritable --out fails at once
    if args.fresh:
        for name in ("state.json", "coverage.json"):
            (out / name).unlink(missing_ok=True)
    _say_if_spent(out, budget)
    from einc.fuzz.campaign import Campaign

    camp = Campaign(corpus, out, seed=args.seed, budget_s=budget, jobs=args.jobs, target=args.target,
                    mode=args.mode, case_timeout=args.case_timeout, reduce_budget_s=args.reduce_time,
                    progress=not args.no_progress and sys.stderr.isatty(), cuda_emu_share=share,
                    max_execs=args.max_execs)
    for name in camp.skipped_seeds():
        print(f"einc fuzz: skipping seed {name}", file=sys.stderr)
    summary = camp.run()
    new = [f for f in summary["findings"] if f["new"]]
    per_target = ", ".join(f"{t} {v['execs']}" for t, v in summary.get("targets", {}).items())
    known = sum(summary.get("known_hits", {}).values())
    print(f"einc fuzz: {summary['execs']} execs in {summary['elapsed_s']:.0f}s ({summary['execs_per_s']:.2f}/s)"
          f"{' (' + per_target + ')' if per_target else ''}, "
          f"{summary['coverage']['branches']} branches, {summary['coverage']['features']} features, "
          f"{len(new)} new finding(s){f' ({known} hits of known bugs)' if known else ''}; "
          f"report in {out / 'summary.json'}")
    failing = [f for f in new if args.fail_on == "any" or _on_einc_path(f)]
    for f in new:
        tag = "" if f in failing else "  [fuzzed TVM pipeline: reported, not failing]"
        print(f"  {f['id']}: {f['signature']}{tag}\n    {f['path']}")
    if summary.get("interrupted"):
        print(f"einc fuzz: interrupted; run the same command again to go on from {out}", file=sys.stderr)
        return 128 + summary.get("signal", 2)
    return 1 if failing else 0


def _on_einc_path(finding: dict) -> bool:
    """Whether a finding's reduced case needs no fuzzed TIR pass, schedule primitive or config.

    cuda-emu findings always count: that target takes none of those, and its GEMM knobs
    (``gpu_knobs``) are options of einc's own GPU schedule, not a fuzzed TVM pipeline."""
    from pathlib import Path

    from einc.fuzz.case import FuzzPipeline

    try:
        pl = FuzzPipeline.from_text((Path(finding["path"]) / "pipeline.txt").read_text())
    except (KeyError, TypeError, OSError):
        return True  # nothing saved to tell: count it
    return not (pl.tir or pl.sched or pl.config)


def _replay(root) -> int:
    """Replay every regression folder (``einc.fuzz.replay`` rules); 1 when one of them fails."""
    from einc.fuzz.corpus import list_regressions
    from einc.fuzz.harness import warm_up
    from einc.fuzz.replay import replay

    from einc.errors import UsageError

    if (root / "meta.json").is_file():
        folders = [root]  # one regression folder
    else:
        folders = list_regressions(root.parent if root.name == "regressions" else root)
        if not folders and root.is_dir():
            folders = sorted(p for p in root.iterdir() if (p / "meta.json").exists())
    if not folders:
        what = "no such folder" if not root.exists() else "not a folder" if not root.is_dir() else \
            "no regression folders (each holds a meta.json) in it, nor in its regressions/"
        raise UsageError(f"nothing to replay in {root}: {what}")
    warm_up()
    failed = 0
    for folder in folders:
        v = replay(folder)
        failed += v.result == "fail"
        reason = "\n    ".join(v.reason.splitlines())
        print(f"{folder.name}: {v.result.upper()} [{v.meta.get('status', 'open') if v.outcome else '?'}] {v.outcome or 'unreadable'}"
              + (f"\n    {reason}" if v.result == "fail" else ""))
    return 1 if failed else 0


def _reduce(folder, budget: float) -> int:
    """Reduce a regression folder's case again while it keeps its recorded signature."""
    from einc.errors import UsageError
    from einc.fuzz.corpus import load_regression, rewrite_case
    from einc.fuzz.harness import warm_up
    from einc.fuzz.reduce import reduce
    from einc.fuzz.replay import run_recorded

    case, meta = load_regression(folder)  # a UsageError naming the file it cannot read
    warm_up(case.pipeline.target)

    def test(c):
        return run_recorded(c, meta)

    now = test(case)
    if now.signature != meta["signature"]:
        raise UsageError(f"{folder.name} does not show its recorded {meta['signature']} (now {now}): nothing to "
                         "reduce; replay it, or record what it shows now")
    reduced, info = reduce(case, test, meta["signature"], max_tests=10**6, budget_s=budget)
    if reduced == case:
        print(f"{folder.name}: already minimal within {info['tests']} tests ({info['seconds']}s)")
        return 0
    rewrite_case(folder, reduced, {"reduce_again": info})
    print(f"{folder.name}: size {tuple(info['size_before'])} -> {tuple(info['size_after'])} (structure, elements, "
          f"pipeline) in {info['steps']} steps, {info['tests']} tests, {info['seconds']}s")
    return 0
