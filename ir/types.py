"""Tensor types: a shape and a dtype.  Dtypes are numpy names; bfloat16 comes from ml_dtypes."""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

def too_many_elements(shape) -> str | None:
    """Why a tensor of ``shape`` cannot exist in einc (kernels index with 64-bit integers), or None.

    A size of 2^63 or more is refused even when another size is 0 (numpy refuses it too, and such a
    size may have too many digits for ``str``)."""
    n = math.prod(shape)
    if n >= 2**63:
        return f"{_approx(n)} elements; einc indexes with 64-bit integers (fewer than 2^63)"
    big = max(shape, default=0)
    if big >= 2**63:
        return f"a size of {_approx(big)}; einc indexes with 64-bit integers (sizes below 2^63)"
    return None


def _approx(n: int) -> str:
    """``n`` to 3 digits, also past the float range (where ``f"{n:.3g}"`` overflows)."""
    return f"{n:.3g}" if n < 10**300 else f"about 1e+{int(math.log10(n))}"


DTYPES: tuple[str, ...] = (
    "bool",
    "int8", "int16", "int32", "int64",
    "uint8", "uint16", "uint32", "uint64",
    "float16", "bfloat16", "float32", "float64",
    "complex64", "complex128",
)


def np_dtype(name: str) -> np.dtype:
    """The numpy dtype for an einc dtype name (bfloat16 through ml_dtypes)."""
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def dtype_name(dt) -> str:
    """The einc name of a numpy dtype, or raise EincTypeError."""
    from einc.errors import EincTypeError

    if isinstance(dt, str) and dt == "bfloat16":
        return "bfloat16"  # a numpy name only once ml_dtypes is imported
    try:
        dt = np.dtype(dt)
    except TypeError as e:
        raise EincTypeError(f"dtype {dt!r} is not a dtype numpy knows ({e})") from e
    name = "bool" if dt == np.bool_ else dt.name
    if name not in DTYPES:
        raise EincTypeError(f"dtype {dt} is not supported by einc (supported: {', '.join(DTYPES)})")
    return name


def result_dtype(*names: str) -> str:
    """numpy's result type of operands of these dtypes (what numpy.einsum returns)."""
    if any(n == "bfloat16" for n in names):
        others = [n for n in names if n != "bfloat16"]
        # bfloat16 promotes like float16 would, but to bfloat16 when alone or with bool/small ints
        probe = result_dtype(*[("float16" if n == "bfloat16" else n) for n in names])
        return "bfloat16" if probe == "float16" or not others else probe
    return dtype_name(np.result_type(*[np.dtype(n) for n in names]))


@dataclass(frozen=True)
class TensorType:
    shape: tuple[int, ...]
    dtype: str

    def __post_init__(self):
        object.__setattr__(self, "shape", tuple(int(s) for s in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for s in self.shape:
            n *= s
        return n

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"
