#!/usr/bin/env python3
"""Supervisor throughput: N `/bin/true` jobs end to end, next to the machine's
raw spawn+wait rate and to xargs -P2, task-spooler (-S 2) and GNU parallel -j2,
all in the same run.

Orchestrator: jobs are submitted while the queue is paused (pipelined over
keep-alive connections), then POST /queue/resume; the clock runs from resume
until GET /queue says counts.succeeded == N (polled every 10 ms). The daemon's
own CPU time over that window (utime+stime of its pid) is printed per job.

    python3 bench/spawn_bench.py                 # N=10000, concurrency 1,2,8
    python3 bench/spawn_bench.py --jobs 2000 --skip tsp,parallel
    python3 bench/spawn_bench.py --binaries old/orchestrator,build-rel/orchestrator,old/orchestrator,build-rel/orchestrator
        # two builds alternately in one run (each with the orchestrator-exec beside it)
"""

import argparse
import os
import shutil
import subprocess
import time

import orchbench as ob

TICK = os.sysconf("SC_CLK_TCK")


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def raw(binary, n, inflight):
    """jobs/s of raw_spawn (or of a whole command line given as a list)."""
    cmd = binary if isinstance(binary, list) else [binary, str(n), str(inflight)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    secs = float(out.split("seconds=")[1].split()[0])
    return int(out.split("jobs=")[1].split()[0]) / secs


def timed(cmd, env=None, shell=False):
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, env=env, shell=shell, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def orchestrator(n, conc, argv, binary=None, log_dir=None, cgroup_mode="auto"):
    d = ob.Daemon(f"spawn-c{conc}-{cgroup_mode}-{abs(hash(binary)) % 10000}", max_concurrency=conc, binary=binary,
                  log_dir=log_dir, extra=f'[cgroup]\nmode = "{cgroup_mode}"')
    d.start()
    try:
        assert d.post("/queue/pause") == 200
        t0 = time.monotonic()
        statuses = ob.submit_many(d.port, [{"argv": argv}] * n, conns=4, window=128)
        submit_s = time.monotonic() - t0
        assert statuses == {201: n}, statuses
        rss_before = ob.rss_kib(d.pid)
        cpu0 = cpu_s(d.pid)
        assert d.post("/queue/resume") == 200
        secs, counts = d.wait_counts(lambda c: c["succeeded"] + c["failed"] >= n,
                                     timeout=max(120, n / 50))
        cpu = cpu_s(d.pid) - cpu0
        assert counts["succeeded"] == n, counts
        return {"rate": n / secs, "secs": secs, "submit_rate": n / submit_s,
                "cpu_ms_per_job": cpu * 1000 / n, "rss_kib": ob.rss_kib(d.pid),
                "rss_before_kib": rss_before}
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=10000)
    ap.add_argument("--conc", default="1,2,8")
    ap.add_argument("--skip", default="", help="comma list of: floor,xargs,tsp,parallel")
    ap.add_argument("--cgroup-modes", default="auto",
                    help="comma list of cgroup.mode values to run the orchestrator with "
                         "(auto: a cgroup per run where possible; off: process groups)")
    ap.add_argument("--binaries", default="",
                    help="comma list of orchestrator binaries to run in turn (default: ORCH_BIN "
                         "or build-rel/orchestrator)")
    a = ap.parse_args()
    n = a.jobs
    skip = set(filter(None, a.skip.split(",")))
    wd = ob.work_dir("spawn")
    raw_bin = ob.build_c("raw_spawn", wd)
    print(f"# spawn_bench jobs={n} {ob.machine()}", flush=True)

    rows = []  # (name, rate, note)
    raw_rates = {}
    for k in (1, 2, 8):
        raw_rates[k] = raw(raw_bin, n, k)
        rows.append((f"raw posix_spawn+wait, {k} in flight", raw_rates[k], ""))
        print(f"raw inflight={k}: {raw_rates[k]:.0f}/s", flush=True)

    if "floor" not in skip:
        # The launcher's own kernel work per job without the daemon
        # (spawn_floor.c): the most this design can reach here.
        floor_bin = ob.build_c("spawn_floor", wd)
        helper = os.path.join(os.path.dirname(a.binaries.split(",")[0] or ob.orch_bin()),
                              "orchestrator-exec")
        mount = ob.cgroup2_mount()
        for k in [int(x) for x in a.conc.split(",")]:
            for cg, pre in [(False, False), (True, False), (False, True), (True, True)]:
                if cg and not mount:
                    continue
                logs = os.path.join(wd, "floor-logs")
                shutil.rmtree(logs, ignore_errors=True)
                os.makedirs(logs)
                root = os.path.join(mount, "orch-bench", "floor") if cg else ""
                cmd = [floor_bin, str(n), str(k), helper, logs, root or "-"]
                if pre:
                    cmd.append("prestart")
                if cg:
                    os.makedirs(root, exist_ok=True)
                try:
                    rate = raw(cmd, None, None)
                finally:
                    if cg:
                        ob.remove_cgroup_tree(root)
                name = (f"floor: the launcher's syscalls, no daemon, {k} in flight"
                        + (", a cgroup per job" if cg else "")
                        + (", next process started ahead" if pre else ""))
                rows.append((name, rate, ""))
                print(f"{name}: {rate:.0f}/s", flush=True)

    binaries = [b for b in a.binaries.split(",") if b] or [None]
    for c in [int(x) for x in a.conc.split(",")]:
        for mode in a.cgroup_modes.split(","):
            for b in binaries:
                r = orchestrator(n, c, ["/bin/true"], binary=b, cgroup_mode=mode)
                note = (f"submit {r['submit_rate']:.0f}/s; daemon cpu {r['cpu_ms_per_job']:.3f} "
                        f"ms/job; rss {r['rss_kib']} KiB")
                name = f"orchestrator max_concurrency={c}, cgroup.mode={mode}"
                if b:
                    name += f", {b}"
                rows.append((name, r["rate"], note))
                print(f"{name}: {r['rate']:.0f}/s ({note})", flush=True)

    if "xargs" not in skip:
        s = timed(f"seq {n} | xargs -P2 -n1 /bin/true", shell=True)
        rows.append(("xargs -P2 -n1", n / s, ""))
        print(f"xargs -P2: {n / s:.0f}/s", flush=True)

    if "tsp" not in skip:
        env = dict(os.environ, TS_SOCKET=os.path.join(wd, "tsp.sock"), TMPDIR=wd)
        subprocess.run(["tsp", "-S", "2"], env=env, check=True)
        # End to end: one `tsp -n /bin/true` client per job (that is how tsp
        # queues), then wait for the last job.
        script = f"for i in $(seq {n}); do tsp -n /bin/true >/dev/null; done; tsp -w >/dev/null"
        try:
            s = timed(["bash", "-c", script], env=env)
            rows.append(("task-spooler -S 2 (submit+run)", n / s, ""))
            print(f"tsp -S 2: {n / s:.0f}/s", flush=True)
        finally:
            subprocess.run(["tsp", "-K"], env=env)

    if "parallel" not in skip:
        s = timed(f"seq {n} | parallel -j2 -N0 /bin/true", shell=True)
        rows.append(("GNU parallel -j2", n / s, ""))
        print(f"parallel -j2: {n / s:.0f}/s", flush=True)

    again = raw(raw_bin, n, 2)
    rows.append(("raw posix_spawn+wait, 2 in flight (again, at the end)", again, ""))
    base = (raw_rates[2] + again) / 2
    print(f"\n| workload ({n} x /bin/true) | jobs/s | x raw(2 in flight, mean {base:.0f}/s) | notes |")
    print("| --- | --- | --- | --- |")
    for name, rate, note in rows:
        print(f"| {name} | {rate:,.0f} | {rate / base:.2f} | {note} |")


if __name__ == "__main__":
    main()
