"""``einc compile``: compile an einsum expression or a ``.ein`` program to a kernel library.

    einc compile "bik,bkj->bij" --shapes 8x64x32,8x32x16 -o bmm.so      # + bmm.so.json
    einc compile "ik,kj->ij" --shapes 512x256,256x128 --emit tir         # print the scheduled TIR
    einc compile "ik,kj->ij" --shapes 4096x4096,4096x4096 --target cuda --resources   # ptxas, SASS
    einc compile model.ein --emit ir --pipeline "canonicalize,decompose{path=optimal}"

Kernels go through the kernel cache (``EINC_CACHE_DIR``); ``--no-cache`` builds afresh.  Without
``-o`` or ``--emit`` it compiles and prints a summary (stages, times, where the kernel came from).
The helpers here (program arguments, loading, compiling) are shared with ``einc run``/``einc bench``.
"""
from __future__ import annotations

import argparse

HELP = "compile an einsum expression or .ein program to a kernel (shared library)"


def add_program_arguments(p: argparse.ArgumentParser, *, shapes_required: bool = False) -> None:
    p.add_argument("source", metavar="EXPR|FILE",
                   help="numpy einsum subscripts (with --shapes), or a .ein program file ('-' reads stdin)")
    p.add_argument("--shapes", metavar="SHAPES", required=shapes_required,
                   help="operand shapes for EXPR, e.g. 8x64x32,8x32x16 ('' or () for a 0-d operand)")
    p.add_argument("--dtype", default="float32", metavar="DTYPE",
                   help="operand dtype for EXPR: one for all, or one per operand comma-separated (default float32)")
    p.add_argument("--target", default="llvm", metavar="TARGET",
                   help="'llvm' (the host CPU, default), 'cuda' (an NVIDIA GPU; compiles without one), a TVM "
                        "target as JSON, or 'interp' (numpy)")
    p.add_argument("--pipeline", metavar="PASSES", default=None,
                   help="IR pass pipeline (default: einc.ir.passes.DEFAULT); 'none' runs no pass")
    p.add_argument("--no-cache", action="store_true", help="build afresh, bypassing the kernel cache")


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_program_arguments(p)
    p.add_argument("-o", "--output", metavar="PATH", help="write the kernel library here (+ PATH.json metadata)")
    p.add_argument("--emit", choices=("ir", "tir", "cuda"),
                   help="print the IR after passes, the scheduled TensorIR, or the CUDA C (cuda targets)")
    p.add_argument("--resources", action="store_true",
                   help="cuda targets: print each kernel's registers, spills, shared memory, blocks per SM "
                        "and main-loop instruction mix (needs nvcc; the SASS mix needs nvdisasm, no GPU)")


def load_program(args, shapes=None, dtypes=None):
    """``(source program, program after the pipeline, pipeline text)`` from the program arguments.

    ``shapes``/``dtypes`` (lists) replace ``--shapes``/``--dtype`` (e.g. taken from ``--inputs``).
    """
    import os
    import sys

    from einc.errors import ParseError
    from einc.frontend.program import expression_program, parse_program, parse_program_file

    if shapes is not None or args.shapes is not None:
        if shapes is None:
            from einc.cli import parse_shapes

            shapes = parse_shapes(args.shapes)
        if dtypes is None:
            dtypes = [d.strip() for d in args.dtype.split(",")]
            dtypes = dtypes[0] if len(dtypes) == 1 else dtypes
        prog0 = expression_program(args.source, shapes, dtypes, filename="expr")
    elif args.source == "-":
        prog0 = parse_program(sys.stdin.read(), filename="<stdin>")
    elif args.source.endswith(".ein") or os.path.isfile(args.source):
        prog0 = parse_program_file(args.source)
    else:
        raise ParseError(f"{args.source!r} is not a file; for an einsum expression give the operand shapes, "
                         "e.g. --shapes 2x3,3x4")
    pipeline = getattr(args, "pipeline", None)
    if pipeline is not None and pipeline.strip().lower() == "none":
        return prog0, prog0, "none"
    from einc.ir.passes import DEFAULT, run_pipeline

    pipeline = pipeline or DEFAULT
    return prog0, run_pipeline(prog0, pipeline), pipeline


def compile_kernel(prog, target, *, cache: bool = True, source_program=None, pipeline=None, subscripts=None):
    """``(Kernel, origin)``: through the kernel cache ("memory"/"disk"/"built") or afresh ("built")."""
    from einc.kernel import Kernel

    if cache:
        from einc.dispatch import get_kernel

        k, origin = get_kernel(prog, target)
    else:
        from einc.kernel import compile_program

        k, origin = compile_program(prog, target, cache=False), "built"
    k.source_program, k.pipeline, k.subscripts = source_program or prog, pipeline, subscripts
    assert isinstance(k, Kernel)
    return k, origin


def export_kernel(k, path) -> str:
    """``Kernel.export``, also for a kernel the cache loaded from disk (its library is copied)."""
    import json
    import os

    lib = getattr(k.built, "library", None)
    if not lib:
        return k.export(path)
    from einc.kernel import SIDECAR_SUFFIX
    from einc.fileio import atomic_write

    path = os.fspath(path)
    atomic_write(path, lib)
    atomic_write(path + SIDECAR_SUFFIX, json.dumps(k.metadata(), indent=1).encode())
    return path


def run(args: argparse.Namespace) -> int:
    import os
    import sys
    import time

    from einc.errors import EincError

    if args.target.strip().lower() in ("interp", "numpy"):
        raise EincError("einc compile needs a compiled target; 'interp' has nothing to compile (use einc run)")
    if args.resources or args.emit == "cuda":
        from einc.kernel import _is_cuda_target
        from einc.lowering.target import resolve

        if not _is_cuda_target(resolve(args.target)):
            raise EincError(f"{'--resources' if args.resources else '--emit cuda'} needs a CUDA target "
                            f"(--target cuda); got {args.target!r}")
    prog0, prog, pipeline = load_program(args)
    if args.emit == "ir":
        from einc.ir.printer import print_program

        sys.stdout.write(print_program(prog))
        if not args.output:
            return 0
    t0 = time.perf_counter()
    # TIR is kept only by a fresh build (a cached library has none)
    k, origin = compile_kernel(prog, args.target, cache=not args.no_cache and args.emit != "tir",
                               source_program=prog0, pipeline=pipeline,
                               subscripts=args.source if args.shapes is not None else None)
    dt = time.perf_counter() - t0
    if args.emit in ("tir", "cuda"):
        sys.stdout.write(k.source(args.emit).rstrip("\n") + "\n")
    if args.resources:
        _print_resources(k)
    if args.output:
        path = export_kernel(k, args.output)
        if k.interpreted:  # a zero-size operand: numpy runs it, no library to write
            print(f"wrote {path}.json (no library: the kernel has a zero-size operand and runs in numpy)",
                  file=sys.stderr)
        else:
            print(f"wrote {path} and {path}.json ({os.path.getsize(path)} bytes)", file=sys.stderr)
    if not args.emit and not args.output and not args.resources:
        print(k.explain())
    print(f"kernel: {origin} in {dt * 1e3:.0f} ms (cache {_cache_dir() if not args.no_cache else 'off'})",
          file=sys.stderr)
    return 0


def _print_resources(k) -> None:
    from einc.lowering.cuda_static import kernel_resources, nvdisasm

    rows = kernel_resources(k)
    print(f"{'kernel':16} {'regs':>4} {'stack':>6} {'smem':>6} {'threads':>7} {'blocks/SM':>9}  main loop")
    for r in rows:
        loop = "-"
        if r.loop_mmas:  # tensor cores: one HMMA is a whole 16x8x16 fragment product
            loop = (f"{r.loop_instrs} instructions, {r.loop_mmas} tensor-core MMAs, "
                    f"{r.loop_mmas / max(1, r.loop_shared_loads):.1f} MMA per shared load")
        elif r.loop_instrs:
            loop = (f"{r.loop_instrs} instructions, {100 * r.fma_share:.0f}% FMA, "
                    f"{r.loop_fmas / max(1, r.loop_shared_loads):.1f} FMA per shared load")
        elif nvdisasm() is None:
            loop = "(no nvdisasm: pip install 'einc[sass]')"
        print(f"{r.name:16} {r.registers:4} {r.stack_bytes:6} {r.smem_bytes:6} {r.threads:7} {r.blocks_per_sm:9}  {loop}")


def _cache_dir() -> str:
    from einc.lowering.cache import cache_dir

    return str(cache_dir())
