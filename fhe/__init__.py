"""einc.fhe: einsum over CKKS-encrypted tensors (in the spirit of EinHops, planned for fewer rotations).

    ctx = einc.fhe.Context(backend="sim" | "seal" | "desilo", poly_modulus_degree=2**15)
    x = ctx.encrypt(array)                 # or layout=plan.input_layouts[k]
    y = einc.fhe.einsum("ik,k->i", x, w)   # w: a plain numpy array (weights) or another CipherTensor
    ctx.decrypt(y)
    einc.fhe.plan("ik,k->i", (128, 128), (128,))   # layouts, op counts, depth, rotation keys

No CKKS library is imported until a backend is created.
"""
from __future__ import annotations

from .context import CipherTensor, Context, einsum
from .layout import Axis, Layout
from .planner import Op, Plan, plan

__all__ = ["Axis", "CipherTensor", "Context", "Layout", "Op", "Plan", "einsum", "plan"]
