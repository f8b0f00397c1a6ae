"""einc.ir: the tensor IR, its verifier, printer, interpreter and passes."""
from .nodes import LABELS, Cast, Einsum, Op, Program, Value, einsum_sizes, single_einsum
from .types import DTYPES, TensorType, dtype_name, np_dtype, result_dtype
from .verify import verify

__all__ = ["LABELS", "Cast", "Einsum", "Op", "Program", "Value", "TensorType", "DTYPES", "dtype_name",
           "np_dtype", "result_dtype", "verify", "einsum_sizes", "single_einsum"]
