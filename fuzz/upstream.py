"""Pure-TVM reproducers of fuzz findings, for reporting a TVM bug upstream.

``tvm_repro(case)`` returns the text of a standalone script that needs TVM only (no einc): the
module einc hands to TVM (lowered, scheduled by einc's CPU schedule unless the case says
``base: none``) as TVMScript, then the case's schedule primitives as plain ``s_tir.Schedule`` calls
(blocks by name, loops by position), its TIR passes and ``tvm.compile`` with its config, **without**
einc's workarounds (``lowering.fuzz_hooks.TVM_BUGS``).  The script may crash or hang: that is the bug
it shows.  Nothing in einc runs it in-process.

    python -m einc.fuzz.upstream corpus/regressions/<id>      # writes <id>/repro_tvm.py
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from .case import Case


def interp_dtype(dtype: str):
    from einc.ir.types import np_dtype

    return np_dtype(dtype)


#: the inputs a wrong-result reproducer runs on, as the script defines them (TVM and numpy only):
#: distinct values (equal ones hide bugs that give every lane one lane's value; a period of 7 keeps
#: diagonals of power-of-two rows varied), exact in every dtype; bfloat16 as the uint16 bits TVM takes
RAMP_SRC = '''def ramp(shape, dtype):
    import numpy as np
    k = np.arange(int(np.prod(shape, dtype=np.int64))).reshape(shape)
    if dtype == "bool":
        return (k % 2).astype(bool)
    if dtype.startswith(("int", "uint")):
        return (k % 7 - (0 if dtype.startswith("u") else 3)).astype(dtype)
    v = ((k % 7 + 1) / 8).astype("float32" if dtype == "bfloat16" else dtype)
    return (v.view(np.uint32) >> 16).astype(np.uint16) if dtype == "bfloat16" else v
'''


class _Recorder:
    """Wraps an ``s_tir.Schedule``: delegates every call, and writes each schedule-changing call as
    a line of plain TVM code (before making it, so the line that crashes is in the script)."""

    _CHANGES = {"split", "reorder", "fuse", "vectorize", "parallel", "unroll", "annotate", "cache_write",
                "cache_read", "decompose_reduction", "rfactor", "compute_inline", "reverse_compute_inline",
                "compute_at", "storage_align"}

    def __init__(self, sch, blocks_of):
        self._sch = sch
        self._blocks_of = blocks_of
        self.lines: list[str] = []

    def _ref(self, x) -> str:
        from tvm.s_tir.schedule import LoopRV, SBlockRV

        sch = self._sch
        if isinstance(x, SBlockRV):
            return f'sch.get_sblock("{sch.get(x).name_hint}")'
        if isinstance(x, LoopRV):
            want = sch.get(x)
            for b in self._blocks_of(sch):
                loops = sch.get_loops(b)
                for i, lp in enumerate(loops):
                    if sch.get(lp).same_as(want):
                        return f'sch.get_loops(sch.get_sblock("{sch.get(b).name_hint}"))[{i}]'
            raise ValueError("a loop with no block under it")
        if isinstance(x, (list, tuple)):
            return "[" + ", ".join(self._ref(v) for v in x) + "]"
        return repr(x)

    def __getattr__(self, name):
        attr = getattr(self._sch, name)
        if name not in self._CHANGES:
            return attr

        def call(*args, **kw):
            parts = [self._ref(a) for a in args] + [f"{k}={self._ref(v)}" for k, v in kw.items()]
            self.lines.append(f"sch.{name}({', '.join(parts)})")
            return attr(*args, **kw)

        return call


def tvm_repro(case: Case, title: str = "", run: bool = False) -> str:
    """The text of a pure-TVM script that replays ``case``'s TVM steps without einc's workarounds
    (a program with complex values: its real form, ``einc.ir.realify``, as the fuzzer builds it)."""
    from einc.ir.realify import CONSTANTS, has_complex, realify
    from einc.lowering import fuzz_hooks, lower as _lower, target as _target
    from einc.lowering._tvm import VERSION, s_tir, tvm
    from .space import parse_config

    if case.src is not None:
        from einc.frontend.program import parse_program

        prog = parse_program(case.src)
    else:
        prog = case.program
    pl = case.pipeline
    if pl.passes.strip():
        from einc.ir.passes import run_pipeline

        prog = run_pipeline(prog, pl.passes)
    consts = {}
    if has_complex(prog):  # what einc hands TVM: the real form, whose constants are passed as they are
        form = realify(prog)
        prog, consts = form.program, {name: CONSTANTS[kind] for name, kind in form.constants}
    expected = None
    if run:
        import numpy as np

        from einc.ir import interp

        scope: dict = {}
        exec(RAMP_SRC, scope)  # noqa: S102 - our own constant: the script's definition, run here too

        def value(v):
            a = scope["ramp"](v.type.shape, v.type.dtype)
            return a.view(interp_dtype("bfloat16")) if v.type.dtype == "bfloat16" else a

        with np.errstate(all="ignore"):
            ref = interp.run(prog, *[consts[v.name] if v.name in consts else value(v) for v in prog.inputs])
        expected = [np.asarray(r).tolist() for r in ref]
    tjson = _target.resolve(None)
    low = _lower.lower(prog)
    if pl.base != "none":
        from einc.lowering import schedules_cpu

        mod, _plan = schedules_cpu.schedule(low, tjson)
    else:
        mod = tvm.IRModule({"main": low.func})
    script = mod.script()
    lines: list[str] = []
    sch = s_tir.Schedule(mod)
    for spec in pl.sched:
        rec = _Recorder(sch.copy(), fuzz_hooks._all_blocks)
        try:
            fuzz_hooks.apply_primitive(rec, spec, workarounds=False)
        except (fuzz_hooks.ScheduleSkipped, s_tir.ScheduleError):
            continue  # TVM refused it cleanly: einc skips it too
        except Exception:  # noqa: BLE001 - the bug: keep the call that failed, stop there
            lines += [f"# {spec}"] + rec.lines
            break
        lines += [f"# {spec}"] + rec.lines
        sch = rec._sch
    passes = []
    from .space import parse_tir_pass

    for spec in pl.tir:
        ns, name, args = parse_tir_pass(spec)
        passes.append(f"tvm.{'tirx' if ns == 'tirx' else 's_tir'}.transform.{name}({', '.join(map(repr, args))})")
    cfg = dict(parse_config(c) for c in pl.config)
    body = "\n".join("    " + ln for ln in lines) or "    pass"
    # the printed module's first lines are its imports, commented out
    script_lines = [ln[2:] if ln.startswith("# from ") else ln for ln in script.splitlines()]
    out = [
        "#!/usr/bin/env python",
        f'"""Pure-TVM reproducer{": " + title if title else ""}',
        "",
        f"Written by einc.fuzz.upstream with TVM {VERSION}; needs TVM only.  The module is what einc hands",
        "to TVM; the schedule calls, TIR passes and compile below are what its fuzzer did.  It may crash or",
        'hang: that is the bug.  Prints "no error" when the bug does not reproduce.',
        '"""',
        "import tvm",
        "from tvm import s_tir",
        *script_lines,
        "",
        "",
        "def main():",
        "    sch = s_tir.Schedule(Module)",
        body,
        "    mod = sch.mod",
    ]
    if passes:
        out += [f"    mod = tvm.ir.transform.Sequential([{', '.join(passes)}])(mod)"]
    out += [
        f"    with tvm.transform.PassContext(opt_level=3, config={cfg!r}):",
        f"        ex = tvm.compile(mod, target=tvm.target.Target({json.loads(tjson)!r}))",
    ]
    if run:  # a wrong result: run on the ramp inputs and print the outputs next to numpy's answer
        from einc.lowering.lower import storage_dtype

        types = prog.types()
        ins = [f"np.array({consts[v.name].tolist()!r}, {str(consts[v.name].dtype)!r})" if v.name in consts else
               f"ramp({v.type.shape!r}, {v.type.dtype!r})" for v in prog.inputs]
        outs = [(types[o].shape, storage_dtype(types[o].dtype)) for o in prog.outputs]
        out += [
            *["    " + ln for ln in RAMP_SRC.splitlines()],
            "    import numpy as np",
            "    dev = tvm.cpu()",
            f"    args = [tvm.runtime.tensor(a, dev) for a in [{', '.join(ins)}]]",
            f"    args += [tvm.runtime.tensor(np.zeros(s, d), dev) for s, d in {outs!r}]",
            '    ex["main"](*args)',
            f"    print('outputs:', [a.numpy().tolist() for a in args[{len(ins)}:]])",  # (as expected's)
            f"    print('expected (numpy):', {expected!r})",
        ]
    out += [
        '    print("no error: the bug did not reproduce")' if not run else
        '    print("the bug reproduces when the outputs differ from numpy\'s")',
        "",
        "",
        'if __name__ == "__main__":',
        "    main()",
        "",
    ]
    return "\n".join(out)


def write_tvm_repro(folder) -> Path:
    """Write ``folder/repro_tvm.py`` for the regression folder ``folder``."""
    from .corpus import atomic_write, load_regression

    folder = Path(folder)
    case, meta = load_regression(folder)
    title = f"einc fuzz finding {meta.get('id', folder.name)}: {meta.get('note', '').split('. ')[0]}"
    path = folder / "repro_tvm.py"
    atomic_write(path, tvm_repro(case, title, run=meta.get("symptom") == "wrong_result"))
    return path


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for f in argv:
        print(write_tvm_repro(f))
    return 0


if __name__ == "__main__":
    sys.exit(main())
