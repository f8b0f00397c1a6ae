"""Target selection: einc target names -> a TVM target as a JSON dict string.

``resolve(None)`` / ``resolve("llvm")`` / ``resolve("cpu")`` detect the host CPU
(``llvm_get_system_cpu()``, never ``mcpu=native``: LLVM 22 silently falls back to generic SSE code
for it) and the number of cores.  A dict, a JSON string or a TVM tag is passed through, with
``mcpu`` filled in for a bare ``{"kind": "llvm"}``.
"""
from __future__ import annotations

import json

_CPU_ALIASES = ("llvm", "cpu", "host")


def host_cores() -> int:
    from .threads import allowed_cpus

    return len(allowed_cpus())


def host_spec() -> dict:
    from ._tvm import cpu_name

    return {"kind": "llvm", "mcpu": cpu_name(), "num-cores": host_cores()}


#: TVM target kinds einc does not compile for
_OTHER_KINDS = ("rocm", "vulkan", "opencl", "metal", "webgpu", "hexagon", "c", "ext_dev", "hybrid")


def resolve(target=None) -> str:
    """The canonical JSON string of a target (what ``Built.target`` and the cache key use)."""
    from einc.errors import Unsupported

    from ._tvm import make_target

    if target is None or (isinstance(target, str) and target.strip().lower() in _CPU_ALIASES):
        spec = host_spec()
    elif isinstance(target, dict):
        spec = dict(target)
    elif isinstance(target, str) and target.strip().startswith("{"):
        try:
            spec = json.loads(target)
        except json.JSONDecodeError as e:
            raise Unsupported(f"target {target!r} is not valid JSON: {e}") from None
    else:
        spec = target
    # --- cuda targets (gpu helper; see cuda_spec) ---
    if _is_cuda(spec):
        spec = cuda_spec(spec)
    # --- end cuda ---
    if isinstance(spec, str) and spec.split()[0].lower() in _OTHER_KINDS:
        spec = {"kind": spec.split()[0].lower()}  # refused below, before TVM logs about it
    if isinstance(spec, dict):
        kind = spec.get("kind")
        if kind not in ("llvm", "cuda"):  # (before TVM: its ROCm/Vulkan kinds log warnings when made)
            raise Unsupported(f"target {target!r}: einc compiles for 'llvm' (CPU) and 'cuda' targets, not {kind!r}")
        if kind == "llvm":
            if spec.get("mcpu") in (None, "native"):
                spec["mcpu"] = host_spec()["mcpu"]
            else:
                _check_cpu(str(spec["mcpu"]), spec.get("mtriple"), target)
            spec.setdefault("num-cores", host_cores())
    try:
        t = make_target(spec)
    except Exception as e:  # noqa: BLE001 - TVM raises ValueError/RuntimeError/...
        raise Unsupported(f"unknown target {target!r}: {str(e).strip().splitlines()[-1]}") from None
    return json.dumps(_target_dict(t), sort_keys=True)


def _check_cpu(mcpu: str, mtriple, target) -> None:
    """An ``mcpu`` LLVM does not know is an error here (TVM logs one error per kernel and builds for a
    generic CPU)."""
    import difflib

    from einc.errors import Unsupported

    from ._tvm import llvm_cpus

    try:
        known = llvm_cpus(mtriple)
    except Exception:  # noqa: BLE001 - an mtriple LLVM lacks: TVM's own error follows
        return
    if known and mcpu not in known:
        near = difflib.get_close_matches(mcpu, known, n=4)
        raise Unsupported(f"target {target!r}: LLVM knows no CPU {mcpu!r}"
                          + (f" (did you mean {', '.join(map(repr, near))}?)" if near else ""))


def _target_dict(t) -> dict:
    out = {}
    raw = json.loads(str(t)) if str(t).startswith("{") else {"kind": t.kind.name}
    for k, v in raw.items():
        if v in ("", [], {}, None) or k in ("keys", "tag"):
            continue
        out[k] = v
    return out


def kind(target_json: str) -> str:
    return json.loads(target_json).get("kind", "llvm")


def to_tvm(target_json: str):
    from ._tvm import make_target

    return make_target(json.loads(target_json))


def vector_bits(target_json: str) -> int:
    """Width of the widest usable SIMD register for this CPU target, in bits."""
    from ._tvm import has_feature

    t = to_tvm(target_json)
    if has_feature("avx512f", t):
        return 512
    if has_feature("avx2", t) or has_feature("avx", t):
        return 256
    if has_feature("neon", t) or has_feature("sse2", t):
        return 128
    return 128


def has_fma(target_json: str) -> bool:
    from ._tvm import has_feature

    return has_feature("fma", to_tvm(target_json))


# --- cuda targets (gpu helper) -------------------------------------------------------------------
#: arch used for ``target="cuda"`` when no GPU is present (the H100 of the benchmark machine)
DEFAULT_CUDA_ARCH = "sm_90"
_CUDA_ALIASES = ("cuda", "gpu", "nvidia")


def _is_cuda(spec) -> bool:
    if isinstance(spec, dict):
        return spec.get("kind") == "cuda"
    return isinstance(spec, str) and (spec.strip().lower() in _CUDA_ALIASES or spec.strip().startswith("nvidia/"))


def cuda_arch() -> tuple[str, bool]:
    """``(arch, detected)``: ``sm_XY`` of GPU 0 when one is present, else ``(DEFAULT_CUDA_ARCH, False)``."""
    from ._tvm import cuda_compute_version

    cv = cuda_compute_version()
    if cv:
        return "sm_" + cv.replace(".", ""), True
    return DEFAULT_CUDA_ARCH, False


def cuda_spec(spec):
    """A CUDA target spec with ``arch`` filled in: from GPU 0 when present, else ``sm_90`` (no GPU
    to ask; TVM itself would silently fall back to ``sm_50``).  Tags (``nvidia/nvidia-h100``) pass."""
    if isinstance(spec, str):
        if spec.strip().startswith("nvidia/"):
            return spec.strip()
        spec = {"kind": "cuda"}
    spec = dict(spec)
    if not spec.get("arch"):
        spec["arch"] = cuda_arch()[0]
    return spec


def is_cuda(target_json: str) -> bool:
    return kind(target_json) == "cuda"
