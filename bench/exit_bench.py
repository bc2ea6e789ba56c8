#!/usr/bin/env python3
"""Exit detection: child exit -> run closed in the store, over N jobs.

Each job is bench/stamp_exit.c: it appends (job id, CLOCK_MONOTONIC ns,
CLOCK_REALTIME us) to a file and _exit(0)s. Jobs run back to back at
max_concurrency 1 (submitted while paused, then resumed), so the daemon is
idle, waiting on the job's pidfd, when the child exits. Three measures:

  A  wake-up (external, us precision): child's last timestamp -> the loop
     thread's waitid(P_PIDFD, ...) syscall, from perf tracepoints recorded in
     CLOCK_MONOTONIC (`perf record -k CLOCK_MONOTONIC -e
     syscalls:sys_enter_waitid`). Needs perf; skipped with --no-perf.
  B  close (the daemon's own histogram orchestrator_exit_detection_seconds):
     pidfd readable -> waitid -> store transaction committed. Bucketed; the
     quantiles are interpolated inside buckets like Prometheus does.
  machine baseline (bench/pidfd_wake.c): the same wake-up without the daemon,
     a C parent in poll() on its child's pidfd.
  C  end to end, coarse: child's CLOCK_REALTIME -> runs.ended_at (a ms
     timestamp the daemon takes just before the closing transaction), read
     from the database afterwards. ended_at is truncated to ms, so each
     sample is exact only to -1 ms.

    python3 bench/exit_bench.py                 # 1000 jobs at concurrency 1, then 1000 at 8
    python3 bench/exit_bench.py --jobs 2000 --conc 1
"""

import argparse
import os
import signal
import sqlite3
import subprocess
import time

import orchbench as ob


def run(n, conc, stamp, use_perf):
    d = ob.Daemon(f"exit-c{conc}", max_concurrency=conc)
    d.start()
    stamps_path = os.path.join(d.dir, "stamps.txt")
    perf_out = os.path.join(d.dir, "waitid.data")
    prof = None
    try:
        assert d.post("/queue/pause") == 200
        assert ob.submit_many(d.port, [{"argv": [stamp, stamps_path]}] * n) == {201: n}
        if use_perf:
            prof = subprocess.Popen(["perf", "record", "-k", "CLOCK_MONOTONIC", "-e",
                                     "syscalls:sys_enter_waitid", "-o", perf_out,
                                     "-t", str(d.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        assert d.post("/queue/resume") == 200
        d.wait_counts(lambda c: c["succeeded"] + c["failed"] >= n, timeout=300, interval=0.05)
        c = ob.Conn(d.port)
        st, metrics = c.request("GET", "/metrics")
        c.close()
    finally:
        if prof:
            prof.send_signal(signal.SIGINT)
            prof.wait(60)
        d.stop()

    res = {"conc": conc}
    buckets, count, total = ob.metric_histogram(metrics.decode(),
                                                "orchestrator_exit_detection_seconds")
    res["B"] = {"n": int(count), "p50": ob.histogram_quantile(buckets, 0.5) * 1e3,
                "p99": ob.histogram_quantile(buckets, 0.99) * 1e3,
                "mean": total / count * 1e3 if count else float("nan"),
                "buckets": [(le, int(c)) for le, c in buckets]}

    stamps = {}
    for line in open(stamps_path):
        job, mono, real = line.split()
        stamps[int(job)] = (int(mono), int(real))
    db = sqlite3.connect(os.path.join(d.dir, "q.db"))
    ended = dict(db.execute("SELECT job_id, ended_at FROM runs WHERE outcome='succeeded'"))
    c_lat = [ended[j] * 1000 - real for j, (_, real) in stamps.items() if j in ended]
    res["C"] = {"n": len(c_lat), "p50": ob.pct(c_lat, 50) / 1e3, "p99": ob.pct(c_lat, 99) / 1e3}

    if use_perf and conc == 1:
        script = subprocess.run(["perf", "script", "-i", perf_out, "--ns", "-F", "time,trace"],
                                capture_output=True, text=True).stdout
        waits = []
        for line in script.splitlines():
            if "which: 0x00000003" not in line:  # P_PIDFD
                continue
            waits.append(int(round(float(line.split(":", 1)[0]) * 1e9)))
        waits.sort()
        monos = sorted(m for m, _ in stamps.values())
        a_lat, j = [], 0
        for m in monos:  # first P_PIDFD waitid after each stamp
            while j < len(waits) and waits[j] < m:
                j += 1
            if j < len(waits):
                a_lat.append(waits[j] - m)
                j += 1
        res["A"] = {"n": len(a_lat), "p50": ob.pct(a_lat, 50) / 1e6,
                    "p99": ob.pct(a_lat, 99) / 1e6, "max": max(a_lat) / 1e6 if a_lat else 0}
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=1000)
    ap.add_argument("--conc", default="1,8")
    ap.add_argument("--no-perf", action="store_true")
    a = ap.parse_args()
    wd = ob.work_dir("exit")
    stamp = ob.build_c("stamp_exit", wd)
    wake = ob.build_c("pidfd_wake", wd)
    use_perf = not a.no_perf and subprocess.run(["which", "perf"], capture_output=True).returncode == 0
    print(f"# exit_bench jobs={a.jobs} {ob.machine()}", flush=True)
    print("| concurrency | measure | n | p50 ms | p99 ms | notes |")
    print("| --- | --- | --- | --- | --- | --- |")
    out = subprocess.run([wake, str(a.jobs)], capture_output=True, text=True).stdout.split()
    kv = {k: v for k, _, v in (x.partition("=") for x in out)}
    print(f"| - | machine: child exit -> parent woken in poll() on its pidfd (pidfd_wake.c) | "
          f"{kv['n']} | {kv['p50']} | {kv['p99']} | max {kv['max']} ms |", flush=True)
    for conc in [int(x) for x in a.conc.split(",")]:
        r = run(a.jobs, conc, stamp, use_perf)
        if "A" in r:
            x = r["A"]
            print(f"| {conc} | A child exit -> loop's waitid (perf) | {x['n']} | {x['p50']:.3f} | "
                  f"{x['p99']:.3f} | max {x['max']:.3f} ms |")
        x = r["B"]
        print(f"| {conc} | B pidfd readable -> run closed (daemon histogram) | {x['n']} | "
              f"{x['p50']:.3f} | {x['p99']:.3f} | mean {x['mean']:.3f} ms |")
        x = r["C"]
        print(f"| {conc} | C child exit -> runs.ended_at (ms clock, -1 ms) | {x['n']} | "
              f"{x['p50']:.3f} | {x['p99']:.3f} | |", flush=True)
        nonzero = [(le, c) for le, c in r["B"]["buckets"]]
        print(f"|   | B buckets (le seconds: cumulative) | | | | {nonzero} |", flush=True)


if __name__ == "__main__":
    main()
