"""einc's CPU thread count: every physical core by default (TVM alone takes half of them on x86),
the user's TVM_NUM_THREADS / OMP_NUM_THREADS when set, and kernels that still run in a forked child."""
import os
import subprocess
import sys
import textwrap

from einc.lowering import threads


def _clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in threads.VARS}
    env.update(extra)
    return env


def _run(code: str, env: dict, timeout: float = 120) -> str:
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True,
                         text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout.strip()


def test_physical_cores_count_hyperthread_siblings_once(tmp_path):
    for cpu, siblings in {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3", 4: "4"}.items():
        d = tmp_path / f"cpu{cpu}" / "topology"
        d.mkdir(parents=True)
        (d / "thread_siblings_list").write_text(siblings + "\n")
    assert threads.physical_cores({0, 1, 2, 3, 4}, sysfs=tmp_path) == 3
    assert threads.physical_cores({0, 2}, sysfs=tmp_path) == 1  # both threads of one core
    assert threads.physical_cores({0, 1, 7}, sysfs=tmp_path) == 3  # no topology for cpu7: a core


def test_cgroup_quota_caps_the_count(tmp_path):
    assert threads.cgroup_cpu_limit(tmp_path) is None  # no cgroup files
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) == 2
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpu_limit(tmp_path) is None
    v1 = tmp_path / "v1"
    (v1 / "cpu").mkdir(parents=True)
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("400000\n")
    (v1 / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpu_limit(v1) == 4
    (v1 / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpu_limit(v1) is None


def test_kernels_use_every_core_unless_the_user_says_otherwise():
    code = """
        import os, einc
        from einc.lowering import threads
        from einc.lowering._tvm import tvm
        k = einc.compile("ij,j->i", (512, 256), (256,))
        print(tvm.get_global_func("runtime.NumThreads")(), threads.default_threads(),
              os.environ.get("TVM_NUM_THREADS"), k.explain().splitlines()[2])
    """
    pool, default, var, line = _run(code, _clean_env()).split(" ", 3)
    assert int(pool) == int(default) == int(var) == threads.default_threads()
    assert line.startswith(f"threads {default} (TVM_NUM_THREADS, set by einc)"), line
    pool, default, var, line = _run(code, _clean_env(OMP_NUM_THREADS="1")).split(" ", 3)
    assert (pool, var) == ("1", "None") and "(OMP_NUM_THREADS)" in line


def test_a_forked_child_runs_kernels_after_the_parent_did():
    """The child inherits the forking thread's TVM pool without its workers; with einc's default the
    child runs on one thread instead of waiting for them forever."""
    code = """
        import os, time, numpy as np, einc
        from einc.lowering import threads
        x = np.random.default_rng(0).standard_normal((2048, 512)).astype("float32")
        k = einc.compile("ij,j->i", x, x[0])
        want = k(x, x[0]).copy()
        pid = os.fork()
        if pid == 0:
            ok = np.allclose(k(x, x[0]), want) and os.environ["TVM_NUM_THREADS"] == "1"
            os._exit(0 if ok else 1)
        deadline = time.time() + 60
        while time.time() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                print("exit", os.waitstatus_to_exitcode(status))
                break
            time.sleep(0.05)
        else:
            os.kill(pid, 9)
            print("hung")
        print("parent", os.environ["TVM_NUM_THREADS"] == str(threads.default_threads()))
    """
    assert _run(code, _clean_env()).split("\n") == ["exit 0", "parent True"]
