"""einc.ir.passes: named IR passes and pipeline strings.

    from einc.ir.passes import run_pipeline, DEFAULT
    prog = run_pipeline(prog, "canonicalize,decompose{path=optimal,memory-limit=4096}")

Passes: ``canonicalize``, ``diagonals``, ``broadcast``, ``decompose{path=..., memory-limit=N}``,
``transposes``.  Each is a frozen dataclass (``einc.ir.passes.base.Pass``) whose fields are its options.
"""
from __future__ import annotations

from .base import (Pass, as_passes, format_pass, format_pipeline, get_pass, parse_pipeline, pass_names,
                   pass_options, register_pass, run_pipeline)

# The pipeline the compiler runs unless told otherwise: clean up, make every operand's labels distinct
# and every size explicit, split n-ary contractions along the auto-chosen path, clean up again.
DEFAULT = "canonicalize,diagonals,broadcast,decompose{path=auto},canonicalize"



def pipeline_for_optimize(optimize="auto", memory_limit=None) -> str:
    """The default pipeline with ``decompose`` following a numpy-style ``optimize`` value: an optimizer
    name, ``True`` (greedy), ``False``/``None`` (no decomposition), ``(name, memory_limit)``, or an
    explicit path (``['einsum_path', (0, 1), ...]`` or ``[(0, 1), ...]``)."""
    from einc.errors import PipelineError

    from .decompose import Decompose, path_option

    if optimize is None or optimize is False:
        return "canonicalize,diagonals,broadcast,canonicalize"
    if optimize is True:
        optimize = "greedy"
    if isinstance(optimize, (list, tuple)) and len(optimize) == 2 and isinstance(optimize[0], str) \
            and optimize[0] != "einsum_path" and isinstance(optimize[1], (int, float)):
        optimize, memory_limit = optimize[0], int(optimize[1])
    if isinstance(optimize, str):
        path = optimize.strip().lower()
    else:
        steps = list(optimize)
        if steps and steps[0] == "einsum_path":
            steps = steps[1:]
        try:
            path = path_option(steps)
        except (TypeError, ValueError):
            raise PipelineError(f"optimize={optimize!r} is not an optimizer name or a path") from None
    if memory_limit == "max_input":
        memory_limit = "max-input"
    try:
        dec = Decompose(path=path, memory_limit=memory_limit)
    except ValueError as e:
        raise PipelineError(f"optimize={optimize!r}, memory_limit={memory_limit!r}: {e}") from None
    return f"canonicalize,diagonals,broadcast,{format_pass(dec)},canonicalize"


__all__ = ["DEFAULT", "pipeline_for_optimize", "Pass", "as_passes", "format_pass", "format_pipeline", "get_pass", "parse_pipeline",
           "pass_names", "pass_options", "register_pass", "run_pipeline"]
