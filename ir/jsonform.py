"""A Program as plain JSON data (kernel sidecars, fuzz cases); the text form is ``ir.printer``."""
from __future__ import annotations

from .nodes import Cast, Einsum, Program, Value
from .types import TensorType


def program_to_json(prog: Program) -> dict:
    body = []
    for op in prog.body:
        if isinstance(op, Einsum):
            body.append({"op": "einsum", "result": op.result, "operands": list(op.operands),
                         "inputs": list(op.inputs), "output": op.output,
                         "shape": list(op.type.shape), "dtype": op.type.dtype})
        else:
            body.append({"op": "cast", "result": op.result, "operand": op.operand,
                         "shape": list(op.type.shape), "dtype": op.type.dtype})
    return {"inputs": [{"name": v.name, "shape": list(v.type.shape), "dtype": v.type.dtype} for v in prog.inputs],
            "body": body, "outputs": list(prog.outputs)}


def program_from_json(d: dict) -> Program:
    ins = tuple(Value(v["name"], TensorType(tuple(v["shape"]), v["dtype"])) for v in d["inputs"])
    body = []
    for o in d["body"]:
        t = TensorType(tuple(o["shape"]), o["dtype"])
        if o["op"] == "einsum":
            body.append(Einsum(o["result"], tuple(o["operands"]), tuple(o["inputs"]), o["output"], t))
        else:
            body.append(Cast(o["result"], o["operand"], t))
    return Program(ins, tuple(body), tuple(d["outputs"]))
