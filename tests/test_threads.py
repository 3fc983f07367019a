"""The thread policy (llmedu.threads): threads = the CPUs this process may use, from fake /proc and cgroup files."""

import json
import os
import subprocess
import sys

import pytest

from llmedu.threads import (
    ENV, CpuQuota, cgroup_cpu_quota, choose, cpu_ticks, decide, others_busy_cpus, parse_threads_env,
)

# -------------------------------------------------------------- decide --


def test_with_no_quota_the_affinity_mask_decides():
    assert decide(2, None, None).threads == 2


def test_a_one_cpu_quota_on_a_big_host_gives_one_thread():
    decision = decide(64, CpuQuota(1.0, "cgroup v2 cpu.max 100000 100000 in /x"), None)
    assert decision.threads == 1 and "quota" in decision.reason and "64 CPUs" in decision.reason


def test_a_fractional_quota_is_rounded_up():
    assert decide(8, CpuQuota(1.5, "q"), None).threads == 2


def test_a_quota_below_one_cpu_still_gives_one_thread():
    assert decide(8, CpuQuota(0.25, "q"), None).threads == 1


def test_a_quota_above_the_affinity_mask_leaves_the_mask_in_charge():
    assert decide(2, CpuQuota(4.0, "q"), None).threads == 2


def test_the_environment_variable_overrides_the_machine():
    decision = decide(2, CpuQuota(1.0, "q"), "3")
    assert decision.threads == 3 and decision.reason.startswith(f"{ENV}=3")


def test_an_empty_environment_variable_counts_as_unset():
    assert decide(2, None, "").threads == 2


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "2 threads"])
def test_a_bad_environment_variable_names_the_variable_and_the_fix(value):
    with pytest.raises(ValueError, match=rf"{ENV}=.*whole number of at least 1.*unset it"):
        parse_threads_env(value)


# ------------------------------------------------------ cgroup files --

def fake_proc(tmp_path, membership: str, mounts: list[str]):
    """A /proc/self with the given cgroup membership and cgroup mounts (mount points under tmp_path)."""
    proc = tmp_path / "proc_self"
    proc.mkdir()
    (proc / "cgroup").write_text(membership)
    lines = [f"{30 + i} 1 0:{30 + i} {root} {tmp_path / point} rw - {kind} {kind} {options}"
             for i, (root, point, kind, options) in enumerate(m.split("|") for m in mounts)]
    (proc / "mountinfo").write_text("25 1 8:1 / / rw - ext4 /dev/sda1 rw\n" + "\n".join(lines) + "\n")
    return proc


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text + "\n")


def test_cgroup_v2_cpu_max_of_this_process_is_read(tmp_path):
    proc = fake_proc(tmp_path, "0::/user/session\n", ["/|cg2|cgroup2|rw"])
    write(tmp_path / "cg2" / "user" / "session" / "cpu.max", "100000 100000")
    quota = cgroup_cpu_quota(proc)
    assert quota.cpus == 1.0 and "cgroup v2" in quota.source


def test_cgroup_v2_max_means_no_quota(tmp_path):
    proc = fake_proc(tmp_path, "0::/a\n", ["/|cg2|cgroup2|rw"])
    write(tmp_path / "cg2" / "a" / "cpu.max", "max 100000")
    assert cgroup_cpu_quota(proc) is None


def test_a_parents_tighter_quota_wins(tmp_path):
    proc = fake_proc(tmp_path, "0::/parent/child\n", ["/|cg2|cgroup2|rw"])
    write(tmp_path / "cg2" / "parent" / "cpu.max", "50000 100000")
    write(tmp_path / "cg2" / "parent" / "child" / "cpu.max", "300000 100000")
    assert cgroup_cpu_quota(proc).cpus == 0.5


def test_cgroup_v1_cfs_quota_is_read(tmp_path):
    proc = fake_proc(tmp_path, "4:cpu,cpuacct:/job\n0::/\n", ["/|cpu|cgroup|rw,cpu,cpuacct"])
    write(tmp_path / "cpu" / "job" / "cpu.cfs_quota_us", "150000")
    write(tmp_path / "cpu" / "job" / "cpu.cfs_period_us", "100000")
    quota = cgroup_cpu_quota(proc)
    assert quota.cpus == 1.5 and "cgroup v1" in quota.source


def test_cgroup_v1_quota_of_minus_one_means_no_quota(tmp_path):
    proc = fake_proc(tmp_path, "1:cpu:/\n", ["/|cpu|cgroup|rw,cpu"])
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1")
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000")
    assert cgroup_cpu_quota(proc) is None


def test_a_container_mount_whose_root_is_the_process_cgroup_reads_the_mount_point(tmp_path):
    # Inside a container the cgroup mount's root is the container's own cgroup.
    proc = fake_proc(tmp_path, "0::/docker/abc\n", ["/docker/abc|cg2|cgroup2|rw"])
    write(tmp_path / "cg2" / "cpu.max", "200000 100000")
    assert cgroup_cpu_quota(proc).cpus == 2.0


def test_a_v2_hierarchy_without_the_cpu_controller_gives_no_quota(tmp_path):
    proc = fake_proc(tmp_path, "0::/\n", ["/|unified|cgroup2|rw"])
    (tmp_path / "unified").mkdir()
    assert cgroup_cpu_quota(proc) is None


def test_without_proc_files_there_is_no_quota(tmp_path):
    assert cgroup_cpu_quota(tmp_path / "missing") is None


def test_choose_combines_the_files_and_the_environment(tmp_path):
    proc = fake_proc(tmp_path, "0::/s\n", ["/|cg2|cgroup2|rw"])
    write(tmp_path / "cg2" / "s" / "cpu.max", "100000 100000")
    assert choose({}, proc).threads == 1
    assert choose({ENV: "2"}, proc).threads == 2


# ----------------------------------------------------- applied at import --

def describe_in_fresh_process(env: dict, module: str) -> dict:
    code = f"import {module}, json, llmedu.threads as t; print(json.dumps(t.describe()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.mark.parametrize("module", ["llmedu.kernels", "llmedu.backward"])
def test_importing_a_compute_module_sets_blas_and_numba_threads(module):
    info = describe_in_fresh_process({ENV: "1"}, module)
    assert info["threads"] == info["threads_numba"] == info["threads_blas"] == 1
    assert info["threads_reason"].startswith(f"{ENV}=1")


def test_numba_never_gets_more_threads_than_its_pool():
    info = describe_in_fresh_process({ENV: "3", "NUMBA_NUM_THREADS": "1"}, "llmedu.kernels")
    assert info["threads"] == 3 and info["threads_numba"] == 1


def test_apply_without_arguments_decides_once():
    code = ("import os, llmedu.kernels, llmedu.threads as t; first = t.describe(); os.environ['LLMEDU_THREADS'] = '2'; "
            "assert t.apply() == first, (t.apply(), first); print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, ENV: "1"})
    assert done.stdout.strip() == "ok", done.stderr[-2000:]


# ------------------------------------------------------------ the command --

def llmedu_command(*args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "llmedu.cli", *args], capture_output=True, text=True,
                          env={**os.environ, **env})


@pytest.mark.parametrize("flag", ["info", "--version"])
def test_info_and_version_report_the_threads_and_why(flag):
    done = llmedu_command(flag, env={ENV: "1"})
    assert done.returncode == 0, done.stderr
    assert "threads: 1 (LLMEDU_THREADS=1" in done.stdout and "BLAS 1, Numba 1" in done.stdout


def test_info_with_a_bad_variable_fails_with_the_fix():
    done = llmedu_command("info", env={ENV: "lots"})
    assert done.returncode == 2 and "whole number of at least 1" in done.stderr


# ------------------------------------------------------ other busy programs --

def test_one_cpu_kept_busy_by_others_takes_one_thread_away():
    decision = decide(2, None, None, others_busy=1.0)
    assert decision.threads == 1 and "other programs kept 1.0" in decision.reason


def test_a_little_background_load_changes_nothing():
    assert decide(2, None, None, others_busy=0.3).threads == 2


def test_others_never_leave_fewer_than_one_thread():
    assert decide(2, None, None, others_busy=5.0).threads == 1


def test_the_environment_variable_wins_over_a_busy_machine():
    assert decide(2, None, "2", others_busy=1.0).threads == 2


def test_others_busy_is_the_busy_time_not_spent_by_this_process():
    before = {0: (100, 1000), 1: (200, 1000)}
    after = {0: (200, 1100), 1: (250, 1100)}  # 150 busy ticks = 1.5 s at 100 ticks/s, over 1 s
    assert others_busy_cpus(before, after, own_seconds=0.5, elapsed=1.0, ticks_per_second=100) == pytest.approx(1.0)


def test_cpu_ticks_reads_only_the_cpus_asked_for(tmp_path):
    stat = tmp_path / "stat"
    stat.write_text("cpu  9 9 9 9 9 9 9 9\ncpu0 10 0 5 80 5 0 0 0\ncpu1 1 1 1 1 1 1 1 1\nintr 5\n")
    assert cpu_ticks({0}, stat) == {0: (15, 100)}
