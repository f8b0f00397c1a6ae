"""Fuzzer ablation and fault-injection self-check (a benchmark, not a test).

    python bench/fuzz_ablation.py --time 60 --fault-time 60 --jobs 2 --seed 1 --out report/ablation.json
    python bench/fuzz_ablation.py --time 120 --jobs 2 --seeds 11 12 13 --skip-faults   # mean/min/max

1. Equal-time campaigns of the three variants, same seed, same seeds corpus:
   ``coverage`` (coverage-guided, Tzer-style interleaving), ``nofeedback`` (mutants of the seeds only,
   the queue never grows), ``generation`` (fresh random programs and pipelines only).  Reported: execs,
   final einc branch coverage, features (branches + TVM pass-change signatures) and distinct bug
   signatures (findings are not reduced or saved here).
2. Fault injection: for each planted fault of ``einc.fuzz.faults`` (wrong loop bound, wrong reduction
   init, swapped labels, dropped broadcast, inverse permutation in a pass), a coverage-guided campaign
   runs with the fault applied in its children until the oracle reports a wrong result or an einc
   internal error (time-to-catch), or the budget runs out (not caught).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _corpus_copy(tmp: Path, name: str) -> Path:
    c = tmp / name / "corpus"  # seeds only: no queue, no regressions (every finding counts)
    (c / "seeds").mkdir(parents=True)
    for p in (ROOT / "corpus" / "seeds").glob("*"):
        shutil.copy(p, c / "seeds" / p.name)
    return c


MODES = ("coverage", "nofeedback", "generation")


def ablation(budget: float, jobs: int, seed: int, target: str, tmp: Path, modes=MODES) -> dict:
    from einc.fuzz.campaign import Campaign

    out = {}
    for mode in modes:
        corpus = _corpus_copy(tmp, f"abl-{mode}")
        camp = Campaign(corpus, corpus.parent / "out", seed=seed, budget_s=budget, jobs=jobs, target=target, mode=mode,
                        reduce_budget_s=0, save_findings=False, progress=False)
        s = camp.run()
        bugs = sorted({f["signature"] for f in s["findings"]})
        out[mode] = {"execs": s["execs"], "execs_per_s": s["execs_per_s"], "branches": s["coverage"]["branches"],
                     "features": s["coverage"]["features"], "distinct_findings": len(bugs), "findings": bugs,
                     "flaky": s.get("flaky", {}), "outcomes": s["outcomes"],
                     "timeline": s["coverage"]["timeline"]}  # [elapsed_s, execs, branches, features, findings]
        print(f"{mode:11s} execs {s['execs']:5d}  branches {s['coverage']['branches']:5d}  "
              f"features {s['coverage']['features']:5d}  findings {len(bugs)}", flush=True)
    return out


def aggregate(runs: dict) -> dict:
    """{seed: ablation()} -> {mode: {metric: {mean, min, max}}} for branches, features, findings, execs."""
    out: dict = {}
    for mode in next(iter(runs.values())):
        out[mode] = {}
        for key in ("branches", "features", "distinct_findings", "execs"):
            vals = [r[mode][key] for r in runs.values()]
            out[mode][key] = {"mean": round(sum(vals) / len(vals), 1), "min": min(vals), "max": max(vals)}
    return out


def fault_check(budget: float, jobs: int, seed: int, tmp: Path, names=None) -> dict:
    from einc.fuzz import faults
    from einc.fuzz.campaign import Campaign

    caught_kinds = ("wrong_result", "einc_internal_error")
    out = {}
    for name in names or sorted(faults.FAULTS):
        if not faults.check(name):
            out[name] = {"applicable": False}
            print(f"{name:22s} not applicable to the current source", flush=True)
            continue
        corpus = _corpus_copy(tmp, f"fault-{name}")

        def stop(camp, outcome):
            return outcome.symptom in caught_kinds

        camp = Campaign(corpus, corpus.parent / "out", seed=seed, budget_s=budget, jobs=jobs, faults=(name,),
                        target=faults.FAULTS[name].target,
                        reduce_budget_s=0, save_findings=False, progress=False, stop_on=stop)
        s = camp.run()
        caught = bool(s["stopped_by"])
        out[name] = {"applicable": True, "caught": caught, "time_to_catch_s": s["stopped_at_s"] if caught else None,
                     "execs_to_catch": s["stopped_at_execs"], "execs": s["execs"], "target": faults.FAULTS[name].target, "by": s["stopped_by"], "what": faults.FAULTS[name].what}
        print(f"{name:22s} {'caught in %.1fs (%d execs) as %s' % (s['stopped_at_s'], s['stopped_at_execs'], s['stopped_by']) if caught else 'NOT caught in %.0fs' % budget}",
              flush=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--time", type=float, default=60.0, help="seconds per ablation variant")
    ap.add_argument("--fault-time", type=float, default=60.0, help="budget per planted fault")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--seeds", type=int, nargs="+", help="ablation over several seeds (mean/min/max per mode)")
    ap.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES), help="ablation variants to run")
    ap.add_argument("--target", default="llvm", choices=("llvm", "interp"))
    ap.add_argument("--skip-ablation", action="store_true")
    ap.add_argument("--skip-faults", action="store_true")
    ap.add_argument("--faults", nargs="*", help="only these faults")
    ap.add_argument("--out", default=None, help="write the results as JSON here")
    args = ap.parse_args(argv)
    t0 = time.time()
    res: dict = {"time_per_variant_s": args.time, "fault_budget_s": args.fault_time, "jobs": args.jobs,
                 "seed": args.seed, "target": args.target}
    with tempfile.TemporaryDirectory(prefix="einc-ablation-") as d:
        tmp = Path(d)
        if not args.skip_ablation and args.seeds:
            res["seeds"] = args.seeds
            runs = {sd: ablation(args.time, args.jobs, sd, args.target, tmp / f"s{sd}", args.modes) for sd in args.seeds}
            res["ablation_runs"] = runs
            res["ablation_stats"] = aggregate(runs)
            for mode, st in res["ablation_stats"].items():
                print(f"{mode:11s} " + "  ".join(f"{k} {v['mean']:.1f} [{v['min']}, {v['max']}]" for k, v in st.items()),
                      flush=True)
        elif not args.skip_ablation:
            res["ablation"] = ablation(args.time, args.jobs, args.seed, args.target, tmp, args.modes)
        if not args.skip_faults:
            res["faults"] = fault_check(args.fault_time, args.jobs, args.seed, tmp, args.faults)
    res["wall_s"] = round(time.time() - t0, 1)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
