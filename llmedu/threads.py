"""How many threads BLAS and Numba use: the CPUs this process may really run on.

The README's section on speed and lesson 02 (``02_transformer``), where the
kernels are timed, explain why this matters. Libraries size their thread
pools from ``os.cpu_count()``, which counts the host's cores, not the ones
this process may use. On Binder a session gets about one CPU by cgroup quota
on a host with dozens of cores; under ``taskset -c 0`` there is one core.
Two threads on one CPU do not run side by side: every parallel loop and
every BLAS product waits, at its end, for the thread that is not running.

The count is decided once, from (smallest wins):

1. the affinity mask (``os.sched_getaffinity``): the CPUs the scheduler
   may put this process on (``taskset``, cpusets, container CPU sets);
2. the CPU quota of this process's cgroup and of its ancestors: cgroup v2
   ``cpu.max`` or cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``,
   rounded up (a quota of 1.5 CPUs gets 2 threads: the quota throttles all
   of them together, so no thread waits for another that is still running);

3. the CPUs other programs keep busy when llmedu starts: a short look at
   ``/proc/stat`` (0.1 s) counts the busy time of the CPUs this process may
   use, minus its own; each whole CPU they fill is one thread fewer (never
   below one). Measured on 2 cores (``benchmarks/README.md``), two threads
   beside one busy program trained many times slower than one thread,
   because every parallel step waits for the thread that has no core.

and ``LLMEDU_THREADS`` overrides all of them. ``decide`` is the pure function;
``apply`` reads the machine and sets the counts with threadpoolctl (BLAS)
and ``numba.set_num_threads``; ``llmedu.kernels`` and ``llmedu.backward``
call it when they are imported. ``describe`` tells what was chosen and why
(``llmedu info``, the speedrun's report).

The look happens once, at import: a program that starts later is not seen
(set ``LLMEDU_THREADS`` then). Results can differ in the last bits between
thread counts (partial sums add up in another order), so a run is
reproduced bit for bit with the same count: the speedrun's report records it.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ENV", "Decision", "CpuQuota", "decide", "parse_threads_env", "affinity_cpus", "cgroup_cpu_quota",
           "others_busy_cpus", "cpu_ticks", "cpu_busy_fraction", "measure_others_busy", "choose", "apply", "describe"]

ENV = "LLMEDU_THREADS"


@dataclass(frozen=True)
class CpuQuota:
    """A cgroup's CPU limit: ``cpus`` = quota / period, and where it was read (for the reason)."""

    cpus: float
    source: str


@dataclass(frozen=True)
class Decision:
    threads: int
    reason: str


# ------------------------------------------------------------ the decision --

def parse_threads_env(value: str) -> int:
    """The thread count in ``LLMEDU_THREADS``: a whole number >= 1, else a ValueError that says how to fix it."""
    text = value.strip()
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise ValueError(f"{ENV}={value!r} is not a number of threads: set it to a whole number of at least 1 "
                     f"(for example {ENV}=1 or {ENV}=2), or unset it to let llmedu choose from the CPUs it may use.")


def _plural(n: float, word: str = "CPU") -> str:
    return f"{n:g} {word}" + ("" if n == 1 else "s")


def decide(affinity: int, quota: CpuQuota | None, env_value: str | None, others_busy: float = 0.0) -> Decision:
    """Threads for BLAS and Numba from the affinity mask's CPU count, the cgroup quota, the CPUs other
    programs keep busy (``others_busy``, in CPUs) and ``LLMEDU_THREADS``."""
    machine = f"{_plural(affinity)} in the affinity mask"
    machine += f", a CPU quota of {_plural(quota.cpus)} ({quota.source})" if quota else ", no CPU quota"
    if env_value is not None and env_value.strip():
        threads = parse_threads_env(env_value)
        return Decision(threads, f"{ENV}={threads} (this process may use: {machine})")
    threads, reason = affinity, machine
    if quota is not None and math.ceil(quota.cpus) < affinity:
        threads, reason = max(1, math.ceil(quota.cpus)), f"the CPU quota, rounded up: {machine}"
    taken = math.floor(others_busy + 0.5)  # whole CPUs that other programs keep busy
    if taken >= 1 and threads > 1:
        threads = max(1, threads - taken)
        reason += f"; other programs kept {others_busy:.1f} of them busy at start, so {_plural(threads, 'thread')}"
    return Decision(threads, reason)


def others_busy_cpus(before: dict, after: dict, own_seconds: float, elapsed: float, ticks_per_second: float) -> float:
    """CPUs kept busy by other processes between two ``/proc/stat`` snapshots ({cpu: (busy, total) ticks})."""
    busy = sum(after[cpu][0] - before[cpu][0] for cpu in after if cpu in before) / ticks_per_second
    return max(0.0, (busy - own_seconds) / elapsed) if elapsed > 0 else 0.0


# ------------------------------------------------------ reading the machine --

def affinity_cpus() -> int:
    """CPUs in this process's affinity mask (``os.cpu_count()`` where the platform has no mask)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # macOS and Windows have no sched_getaffinity
        return os.cpu_count() or 1


def _mounts(mountinfo: str) -> list[tuple[str, str, str, set]]:
    """(fs type, mount point, root inside the hierarchy, super options) of each cgroup mount in /proc/self/mountinfo."""
    mounts = []
    for line in mountinfo.splitlines():
        before, _, after = line.partition(" - ")
        fields, tail = before.split(), after.split()
        if len(fields) >= 5 and len(tail) >= 3 and tail[0] in ("cgroup", "cgroup2"):
            mounts.append((tail[0], fields[4], fields[3], set(tail[2].split(","))))
    return mounts


def _cgroup_dirs(mount_point: str, mount_root: str, path: str) -> list[Path]:
    """This process's cgroup folder under a mount, then each parent up to the mount point."""
    inside = mount_root == "/" or path == mount_root or path.startswith(mount_root.rstrip("/") + "/")
    relative = path[len(mount_root.rstrip("/")):] if inside else ""  # a path outside the mount: use its root
    top = Path(mount_point)
    here = top / relative.strip("/") if relative.strip("/") else top
    dirs = [here]
    while here != top and top in here.parents:
        here = here.parent
        dirs.append(here)
    return dirs


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _v2_quota(folder: Path) -> CpuQuota | None:
    """``cpu.max`` holds "<quota> <period>" in microseconds, or "max <period>" for no limit."""
    text = _read(folder / "cpu.max")
    parts = text.split() if text else []
    if len(parts) == 2 and parts[0] != "max" and parts[0].isdigit() and parts[1].isdigit() and int(parts[1]) > 0:
        return CpuQuota(int(parts[0]) / int(parts[1]), f"cgroup v2 cpu.max {parts[0]} {parts[1]} in {folder}")
    return None


def _v1_quota(folder: Path) -> CpuQuota | None:
    """``cpu.cfs_quota_us`` is -1 for no limit; the quota is per ``cpu.cfs_period_us``."""
    quota, period = _read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us")
    if quota and period and quota.isdigit() and period.isdigit() and int(quota) > 0 and int(period) > 0:
        return CpuQuota(int(quota) / int(period), f"cgroup v1 cpu.cfs_quota_us {quota} per cpu.cfs_period_us "
                                                  f"{period} in {folder}")
    return None


def cgroup_cpu_quota(proc_self: Path = Path("/proc/self")) -> CpuQuota | None:
    """The tightest CPU quota on this process's cgroups (v2 and v1) and their ancestors; None if there is none."""
    membership, mountinfo = _read(proc_self / "cgroup"), _read(proc_self / "mountinfo")
    if membership is None or mountinfo is None:
        return None  # not Linux, or /proc is not there
    v2_path = next((line.split(":", 2)[2] for line in membership.splitlines() if line.startswith("0::")), None)
    v1_path = next((line.split(":", 2)[2] for line in membership.splitlines()
                    if line.count(":") >= 2 and "cpu" in line.split(":", 2)[1].split(",")), None)
    quotas = []
    for fs_type, mount_point, mount_root, options in _mounts(mountinfo):
        if fs_type == "cgroup2" and v2_path is not None:
            quotas += [_v2_quota(d) for d in _cgroup_dirs(mount_point, mount_root, v2_path)]
        elif fs_type == "cgroup" and "cpu" in options and v1_path is not None:
            quotas += [_v1_quota(d) for d in _cgroup_dirs(mount_point, mount_root, v1_path)]
    return min((q for q in quotas if q is not None), key=lambda q: q.cpus, default=None)


def cpu_ticks(cpus: set[int] | None, stat: Path = Path("/proc/stat")) -> dict:
    """{cpu number: (busy ticks, total ticks)} for ``cpus`` (all if None) from /proc/stat; {} where unreadable."""
    ticks = {}
    for line in (_read(stat) or "").splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and (cpus is None or int(name[3:]) in cpus):
            numbers = [int(v) for v in values[:8]]  # user nice system idle iowait irq softirq steal
            idle = numbers[3] + (numbers[4] if len(numbers) > 4 else 0)
            ticks[int(name[3:])] = (sum(numbers) - idle, sum(numbers))
    return ticks


def cpu_busy_fraction(seconds: float = 0.5, stat: Path = Path("/proc/stat")) -> float | None:
    """Fraction of all CPUs busy over the next ``seconds`` (every process, this one too); None if unknown.

    The benchmarks print it before they start: their figures need an idle machine.
    """
    before = cpu_ticks(None, stat)
    time.sleep(seconds)
    after = cpu_ticks(None, stat)
    if not before or not after:
        return None
    total = sum(after[cpu][1] - before[cpu][1] for cpu in after if cpu in before)
    return sum(after[cpu][0] - before[cpu][0] for cpu in after if cpu in before) / max(1, total)


def measure_others_busy(seconds: float = 0.1, stat: Path = Path("/proc/stat")) -> float:
    """CPUs (of those this process may use) that other programs keep busy, over ``seconds``; 0 where unknown."""
    try:
        cpus = os.sched_getaffinity(0)
        ticks_per_second = os.sysconf("SC_CLK_TCK")
    except (AttributeError, OSError, ValueError):
        return 0.0
    before, own_before, start = cpu_ticks(cpus, stat), time.process_time(), time.monotonic()
    time.sleep(seconds)
    after, own, elapsed = cpu_ticks(cpus, stat), time.process_time() - own_before, time.monotonic() - start
    return others_busy_cpus(before, after, own, elapsed, ticks_per_second) if before and after else 0.0


def choose(environ=os.environ, proc_self: Path = Path("/proc/self")) -> Decision:
    """The decision for this process, from the machine and the environment (no look at the load if the variable is set)."""
    if environ.get(ENV, "").strip():
        return decide(affinity_cpus(), cgroup_cpu_quota(proc_self), environ[ENV])
    return decide(affinity_cpus(), cgroup_cpu_quota(proc_self), None, measure_others_busy())


# ------------------------------------------------------------- applying it --

_applied: dict = {}  # what apply() set, once: the decision and the counts each library got


def apply(threads: int | None = None) -> dict:
    """Set BLAS's and Numba's thread counts; without an argument, to ``choose()``'s decision, once.

    Called by ``llmedu.kernels`` and ``llmedu.backward`` at import, so the
    first import decides and later calls return what was set. Passing
    ``threads`` sets that count (the benchmarks compare counts this way).
    Numba cannot go above ``NUMBA_NUM_THREADS`` (the pool it started), and
    its count belongs to the calling Python thread: call it from the thread
    that runs the model (a notebook's kernel runs cells in its main thread).
    """
    if threads is None and _applied:
        return describe()
    import numba
    from threadpoolctl import threadpool_limits

    decision = choose() if threads is None else Decision(threads, "set by llmedu.threads.apply")
    numba_threads = min(decision.threads, numba.config.NUMBA_NUM_THREADS)
    numba.set_num_threads(numba_threads)
    threadpool_limits(limits=decision.threads, user_api="blas")
    _applied.update(decision=decision, numba_threads=numba_threads)
    return describe()


def describe() -> dict:
    """Threads chosen and why, as flat keys (``llmedu info``, the speedrun's report.json); {} before ``apply``."""
    if not _applied:
        return {}
    import numba
    from threadpoolctl import threadpool_info

    blas = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    return {"threads": _applied["decision"].threads, "threads_reason": _applied["decision"].reason,
            "threads_numba": numba.get_num_threads(), "threads_blas": blas[0] if blas else None,
            "cpu_count": os.cpu_count()}


def pinned(command: str) -> str:
    """``command`` prefixed with ``LLMEDU_THREADS=<the threads this process uses>``, to record with results.

    Training sums in another order with another thread count, so a result
    file's command reproduces its numbers to the last digit only with the
    same count (lesson 08's commands write it into their JSON).
    """
    return f"{ENV}={apply()['threads']} {command}"
