"""The TVM-only reproducers under corpus/tvm_bugs/ (see its README): each exits 1 while its TVM bug is
there.  A failure here means TVM fixed the bug: drop einc's workaround (named in the test) and the folder."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.tvm

BUGS = Path(__file__).resolve().parents[1] / "corpus" / "tvm_bugs"

# folder -> (what the script prints as evidence, einc's workaround to drop once it exits 0)
CASES = {
    "async_copy_strided_shared": ("n = ['16'] bytes",
                                  "lowering/schedules_gpu.py _gemm: 4-byte copies of K-major tiles under async"),
    "async_copy_lanes": ("load->indices[0].ty().lanes() == store->indices[0].ty().lanes()",
                         "lowering/fuzz_hooks.py build_cuda_emu: TVM_BUGS['async_copy_lanes']"),
}


def test_every_folder_is_listed():
    assert sorted(p.name for p in BUGS.iterdir() if p.is_dir()) == sorted(CASES)


@pytest.mark.parametrize("name", sorted(CASES))
def test_tvm_bug_still_reproduces(name):
    script = BUGS / name / "repro_tvm.py"
    src = script.read_text()
    assert "import einc" not in src and "from einc" not in src, "repro_tvm.py must need TVM only"
    assert (BUGS / name / "README.md").is_file()
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    evidence, workaround = CASES[name]
    out = p.stdout + p.stderr
    assert p.returncode == 1, (f"{name}: exit {p.returncode}, so TVM no longer shows the bug: drop the workaround "
                               f"({workaround}) and corpus/tvm_bugs/{name}\n{out[-2000:]}")
    assert evidence in out and "BUG:" in out, out[-2000:]
