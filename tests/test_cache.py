"""The kernel cache: keys, the entry format, atomic writes, corruption, two processes sharing."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from einc.ir import TensorType, single_einsum
from einc.lowering import cache as C


def prog(sub="ik,kj->ij", shapes=((4, 5), (5, 6)), dtype="float32"):
    return single_einsum(sub, [TensorType(s, dtype) for s in shapes])


def fake_loader(payload, meta):
    return ("loaded", payload)


@pytest.fixture
def kc(tmp_path):
    return C.KernelCache(tmp_path, loader=fake_loader)


# -- keys ---------------------------------------------------------------------------------------

def test_key_is_stable_and_depends_on_program_and_target():
    t1 = json.dumps({"kind": "llvm", "mcpu": "znver3"})
    t2 = json.dumps({"kind": "llvm", "mcpu": "skylake"})
    assert C.cache_key(prog(), t1) == C.cache_key(prog(), t1)
    assert C.cache_key(prog(), t1) != C.cache_key(prog(), t2)
    assert C.cache_key(prog(), t1) != C.cache_key(prog(shapes=((4, 5), (5, 7))), t1)
    assert C.cache_key(prog(), t1) != C.cache_key(prog(dtype="float64"), t1)
    assert C.cache_key(prog(), t1) != C.cache_key(prog(), t1, opt="x")


def test_key_changes_with_versions(monkeypatch):
    t = '{"kind":"llvm"}'
    k0 = C.cache_key(prog(), t)
    v = C.versions()
    monkeypatch.setattr(C, "_VERSIONS", {**v, "tvm": "99.0"})
    assert C.cache_key(prog(), t) != k0
    monkeypatch.setattr(C, "_VERSIONS", {**v, "schedule": "other"})
    assert C.cache_key(prog(), t) != k0


def test_cache_dir_env_override(monkeypatch, tmp_path):
    monkeypatch.setenv("EINC_CACHE_DIR", str(tmp_path / "x"))
    assert C.cache_dir() == tmp_path / "x"
    monkeypatch.delenv("EINC_CACHE_DIR")
    assert "einc" in str(C.cache_dir())


# -- the entry format ---------------------------------------------------------------------------

def test_entry_roundtrip():
    blob = C.encode_entry("k1", b"\x7fELFpayload", {"a": 1})
    header, payload = C.decode_entry(blob, "k1")
    assert payload == b"\x7fELFpayload" and header["meta"] == {"a": 1} and header["key"] == "k1"


@pytest.mark.parametrize("damage", ["truncate", "flip", "magic", "key", "header", "empty"])
def test_entry_damage_is_detected(damage):
    blob = bytearray(C.encode_entry("k1", os.urandom(1000)))
    if damage == "truncate":
        blob = blob[:-10]
    elif damage == "flip":
        blob[-5] ^= 0xFF
    elif damage == "magic":
        blob[0] ^= 0xFF
    elif damage == "header":
        blob[14] = ord("{") ^ 0x55
    elif damage == "empty":
        blob = b""
    with pytest.raises(C.BadEntry):
        C.decode_entry(bytes(blob), "k2" if damage == "key" else "k1")


# -- the cache ----------------------------------------------------------------------------------

def test_miss_then_memory_then_disk_hit(kc, tmp_path):
    built = []

    def build():
        built.append(1)
        return b"LIB" * 100, {"t": 1}, "module"

    e1 = kc.get_or_build("ab" * 32, build)
    e2 = kc.get_or_build("ab" * 32, build)
    assert len(built) == 1 and e1 is e2 and e1.module == "module"
    assert kc.stats["miss"] == 1 and kc.stats["memory"] == 1
    fresh = C.KernelCache(tmp_path, loader=fake_loader)   # a new process: only the disk
    e3 = fresh.get_or_build("ab" * 32, build)
    assert len(built) == 1 and fresh.stats["disk"] == 1
    assert e3.module == ("loaded", b"LIB" * 100) and e3.meta == {"t": 1} and e3.origin == "disk"


def test_store_leaves_no_temp_files(kc):
    for i in range(5):
        kc.store("cd" * 32, os.urandom(100 + i))
    files = [p.name for p in kc.directory.rglob("*") if p.is_file()]
    assert files == ["cd" * 32 + C.SUFFIX]


def test_failed_write_leaves_old_entry(kc, monkeypatch):
    kc.store("ee" * 32, b"old")

    def boom(fd):
        raise OSError("disk full")

    monkeypatch.setattr(C.os, "fsync", boom)
    with pytest.warns(RuntimeWarning, match="cannot write"):
        kc.store("ee" * 32, b"new")
    monkeypatch.undo()
    fresh = C.KernelCache(kc.directory, loader=fake_loader)
    assert fresh.lookup("ee" * 32).payload == b"old"
    assert kc.stats["write_failed"] == 1
    assert len([p for p in kc.directory.rglob("*") if p.is_file()]) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "foreign"])
def test_corrupt_entry_is_rebuilt(kc, tmp_path, damage):
    key = "ff" * 32
    kc.store(key, b"GOOD" * 50)
    p = kc.path(key)
    blob = bytearray(p.read_bytes())
    if damage == "truncate":
        blob = blob[: len(blob) // 2]
    elif damage == "flip":
        blob[-1] ^= 1
    elif damage == "garbage":
        blob = bytearray(os.urandom(300))
    elif damage == "foreign":   # a valid entry, but of another key, copied into this name
        blob = bytearray(C.encode_entry("00" * 32, b"OTHER"))
    p.write_bytes(bytes(blob))
    fresh = C.KernelCache(tmp_path, loader=fake_loader)
    e = fresh.get_or_build(key, lambda: (b"REBUILT", {}, "m"))
    assert e.payload == b"REBUILT" and fresh.stats["corrupt"] == 1 and fresh.stats["miss"] == 1
    assert C.decode_entry(p.read_bytes(), key)[1] == b"REBUILT"


def test_loader_failure_is_a_miss_not_a_crash(tmp_path):
    def bad_loader(payload, meta):
        raise RuntimeError("invalid ELF header")

    C.KernelCache(tmp_path, loader=fake_loader).store("aa" * 32, b"x")
    kc = C.KernelCache(tmp_path, loader=bad_loader)
    with pytest.warns(RuntimeWarning, match="failed to load"):
        e = kc.get_or_build("aa" * 32, lambda: (b"y", {}, "m"))
    assert e.payload == b"y" and kc.stats["corrupt"] == 1


def test_unwritable_dir_warns_and_still_returns(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a dir")
    kc = C.KernelCache(blocker / "sub", loader=fake_loader)
    with pytest.warns(RuntimeWarning):
        e = kc.get_or_build("ab" * 32, lambda: (b"p", {}, "m"))
    assert e.module == "m" and kc.get_or_build("ab" * 32, lambda: 1 / 0) is e


def test_prune_removes_oldest(kc):
    for i, k in enumerate(["a1", "b2", "c3"]):
        kc.store(k * 32, b"x" * 1000)
        os.utime(kc.path(k * 32), (1000 + i, 1000 + i))
    assert kc.prune(2500) == 1
    assert not kc.path("a1" * 32).exists() and kc.path("c3" * 32).exists()


WRITER = textwrap.dedent("""
    import os, sys
    from einc.lowering import cache as C
    kc = C.KernelCache(sys.argv[1], loader=lambda p, m: p)
    seed = int(sys.argv[2])
    bad = 0
    for i in range(150):
        payload = bytes([seed]) * (20000 + 97 * i)
        kc.store(sys.argv[3], payload, {"writer": seed})
        e = C.KernelCache(sys.argv[1], loader=lambda p, m: p).read(sys.argv[3])
        if e is None or len(set(e.payload)) != 1 or len(e.payload) < 20000:
            bad += 1
    print(bad)
""")


def test_two_processes_share_one_key(tmp_path):
    key = "9a" * 32
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), str(s), key],
                              stdout=subprocess.PIPE, text=True) for s in (1, 2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == ["0", "0"], "a reader saw a torn or missing entry"
    header, payload = C.decode_entry(C.KernelCache(tmp_path).path(key).read_bytes(), key)
    assert header["meta"]["writer"] in (1, 2) and set(payload) == {header["meta"]["writer"]}
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == [key + C.SUFFIX]


# -- with TVM: a real library ---------------------------------------------------------------------

@pytest.mark.tvm
def test_garbage_library_with_valid_checksum_is_rejected(tmp_path):
    pytest.importorskip("einc.lowering._tvm")
    kc = C.KernelCache(tmp_path)
    kc_writer = C.KernelCache(tmp_path, loader=fake_loader)
    kc_writer.store("bb" * 32, b"\x7fELF not really a library" * 10)
    with pytest.warns(RuntimeWarning, match="failed to load"):
        assert kc.lookup("bb" * 32) is None
    assert kc.stats["corrupt"] == 1


@pytest.mark.tvm
def test_build_cached_memory_then_disk_then_export(tmp_path):
    from einc.kernel import Kernel, load

    p = prog(shapes=((24, 16), (16, 8)))
    kc = C.KernelCache(tmp_path / "c")
    b1, o1 = C.build_cached(p, cache=kc)
    b2, o2 = C.build_cached(p, cache=kc)
    assert (o1, o2) == ("built", "memory") and b2 is b1
    other = C.KernelCache(tmp_path / "c")                # another process: the disk only
    b3, o3 = C.build_cached(p, cache=other)
    assert o3 == "disk" and b3.mod is None and other.stats["disk"] == 1
    a = np.random.default_rng(0).random((24, 16), np.float32)
    b = np.random.default_rng(1).random((16, 8), np.float32)
    np.testing.assert_allclose(Kernel(p, b3)(a, b), a @ b, rtol=1e-5)
    so = tmp_path / "k.so"                               # a loaded library still exports (as bytes)
    k = Kernel(p, b3)
    b3.export(str(so))
    (tmp_path / "k.so.json").write_text(json.dumps(k.metadata()))
    np.testing.assert_allclose(load(so)(a, b), a @ b, rtol=1e-5)
    assert C.build_cached(p, "llvm", cache=other)[1] == "memory"   # "llvm" names the same host target


def test_cache_cli_info_prune_clear(tmp_path, monkeypatch, capsys):
    from einc.cli import main
    from einc.commands.cache import parse_size

    monkeypatch.setenv("EINC_CACHE_DIR", str(tmp_path))
    kc = C.KernelCache()
    for i in range(4):
        kc.store(f"{i:02d}" + "0" * 62, b"x" * 1000, {"i": i})
        os.utime(kc.path(f"{i:02d}" + "0" * 62), (1000 + i, 1000 + i))  # entry 0 is the oldest
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out
    assert str(tmp_path) in out and "entries: 4" in out
    newest_two = sum(kc.path(f"{i:02d}" + "0" * 62).stat().st_size for i in (2, 3))  # headers differ in size
    assert main(["cache", "prune", "--max-size", str(newest_two)]) == 0
    assert "removed 2 entries; 2 left" in capsys.readouterr().out
    left = {p.name for p in kc.entries()}
    assert left == {kc.path("02" + "0" * 62).name, kc.path("03" + "0" * 62).name}  # the newest stay
    assert main(["cache", "clear"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out and kc.entries() == []
    assert parse_size("200M") == 200 << 20 and parse_size("2GiB") == 2 << 30 and parse_size("512") == 512
    assert main(["cache", "prune", "--max-size", "lots"]) == 2
    assert "expected a size" in capsys.readouterr().err
