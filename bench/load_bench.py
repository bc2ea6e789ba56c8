#!/usr/bin/env python3
"""Load (issue 7), all at once on one daemon:

  - --sleepers `sleep 300` jobs running (default 1000),
  - --idle idle keep-alive HTTP connections held open (default 2000;
    server.max_connections = 4096, server.idle_timeout_ms = 300000),
  - a burst of --burst `/bin/true` submits over --conns connections
    (default 10000 over 32; 4 processes x 8 threads, one request at a time per
    connection), which run on the --free slots left above the sleepers,
  - a /healthz probe (its own process, one keep-alive connection, one request
    every 2 ms) whose latency is reported for the burst window,
  - VmRSS and the fd count sampled every 100 ms.

At the end: every submit answered 201, every burst job succeeded exactly once
(one run each, from the database), the sleepers still running, the idle
connections still open, and the daemon's RSS/fds.

    python3 bench/load_bench.py
    python3 bench/load_bench.py --sleepers 200 --idle 500 --burst 2000
"""

import argparse
import multiprocessing as mp
import os
import resource
import socket
import sqlite3
import threading
import time

import orchbench as ob


def burst_worker(port, bodies, threads, out):
    shards = [bodies[i::threads] for i in range(threads)]
    statuses = {}
    lock = threading.Lock()

    def run(shard):
        local = {}
        c = ob.Conn(port)
        try:
            for b in shard:
                st, _ = c.request("POST", "/jobs", b)
                local[st] = local.get(st, 0) + 1
        except Exception as e:  # reported, counted as an error
            local["exception: " + type(e).__name__] = local.get("exception", 0) + 1
        finally:
            c.close()
        with lock:
            for k, v in local.items():
                statuses[k] = statuses.get(k, 0) + v

    ts = [threading.Thread(target=run, args=(s,)) for s in shards]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    out.put(statuses)


def health_probe(port, stop, out):
    """/healthz on one keep-alive connection every 2 ms until `stop`; puts
    ([(start, ms)], errors). The start is time.monotonic() (CLOCK_MONOTONIC,
    the same clock in every process), so a caller can keep only the samples
    of a window."""
    c = ob.Conn(port)
    samples, errors = [], 0
    while not stop.is_set():
        t0 = time.monotonic()
        try:
            st, _ = c.request("GET", "/healthz")
            if st != 200:
                errors += 1
        except OSError:
            errors += 1
            c = ob.Conn(port)
        samples.append((t0, (time.monotonic() - t0) * 1e3))
        time.sleep(0.002)
    out.put((samples, errors))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sleepers", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=2000)
    ap.add_argument("--burst", type=int, default=10000)
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--free", type=int, default=32, help="slots above the sleepers")
    a = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, a.idle + a.sleepers + 4096), hard))
    print(f"# load_bench sleepers={a.sleepers} idle={a.idle} burst={a.burst} conns={a.conns} "
          f"{ob.machine()}", flush=True)
    d = ob.Daemon("load", max_concurrency=a.sleepers + a.free,
                  extra_server="max_connections = 4096\nidle_timeout_ms = 300000")
    d.start()
    idle = []
    samples = []
    try:
        assert ob.submit_many(d.port, [{"argv": ["sleep", "300"], "priority": 10}] * a.sleepers) \
            == {201: a.sleepers}
        d.wait_counts(lambda c: c["running"] >= a.sleepers, timeout=120, interval=0.1)
        d.note_running()
        base = (ob.rss_kib(d.pid), ob.fd_count(d.pid))
        print(f"{a.sleepers} sleepers running: VmRSS {base[0]} KiB, fds {base[1]}", flush=True)
        for _ in range(a.idle):
            s = socket.create_connection(("127.0.0.1", d.port))
            idle.append(s)
        time.sleep(0.5)
        with_idle = (ob.rss_kib(d.pid), ob.fd_count(d.pid))
        print(f"+ {a.idle} idle connections: VmRSS {with_idle[0]} KiB, fds {with_idle[1]}",
              flush=True)

        ctx = mp.get_context("fork")
        stop = ctx.Event()
        hq = ctx.Queue()
        probe = ctx.Process(target=health_probe, args=(d.port, stop, hq))
        probe.start()
        time.sleep(0.3)
        bodies = [{"argv": ["/bin/true"], "name": f"burst-{i}"} for i in range(a.burst)]
        procs_n = 4
        bq = ctx.Queue()
        t0 = time.monotonic()
        workers = [ctx.Process(target=burst_worker,
                               args=(d.port, bodies[i::procs_n], a.conns // procs_n, bq))
                   for i in range(procs_n)]
        for w in workers:
            w.start()
        statuses = {}
        done = 0
        while done < procs_n:
            samples.append((ob.rss_kib(d.pid), ob.fd_count(d.pid)))
            try:
                r = bq.get(timeout=0.1)
                for k, v in r.items():
                    statuses[k] = statuses.get(k, 0) + v
                done += 1
            except Exception:
                pass
        burst_s = time.monotonic() - t0
        for w in workers:
            w.join()
        stop.set()
        probed, herr = hq.get(timeout=30)
        lat = [ms for _, ms in probed]
        probe.join()
        print(f"burst: {a.burst} submits in {burst_s:.1f}s = {a.burst / burst_s:.0f}/s; "
              f"statuses {statuses}", flush=True)
        print(f"/healthz during the burst: n={len(lat)} p50 {ob.pct(lat, 50):.2f} ms "
              f"p99 {ob.pct(lat, 99):.2f} ms max {max(lat):.2f} ms errors {herr}", flush=True)

        secs, counts = d.wait_counts(lambda c: c["succeeded"] + c["failed"] >= a.burst,
                                     timeout=240, interval=0.2)
        drain_s = time.monotonic() - t0
        end = (ob.rss_kib(d.pid), ob.fd_count(d.pid))
        alive = 0
        for s in idle:
            s.setblocking(False)
            try:
                alive += 1 if s.recv(1, socket.MSG_PEEK) else 0
            except BlockingIOError:
                alive += 1
            except OSError:
                pass
        print(f"all burst jobs finished {drain_s:.1f}s after the burst began; counts {counts}",
              flush=True)
        print(f"idle connections still open: {alive}/{a.idle}", flush=True)
        peak_rss = max(s[0] for s in samples)
        peak_fds = max(s[1] for s in samples)
        print(f"VmRSS KiB: sleepers {base[0]}, +idle {with_idle[0]}, peak in burst {peak_rss}, "
              f"end {end[0]}; fds: {base[1]}, {with_idle[1]}, peak {peak_fds}, end {end[1]}")
    finally:
        for s in idle:
            s.close()
        d.stop()
    db = sqlite3.connect(os.path.join(d.dir, "q.db"))
    jobs = db.execute("SELECT count(*) FROM jobs WHERE name LIKE 'burst-%'").fetchone()[0]
    distinct = db.execute("SELECT count(DISTINCT name) FROM jobs WHERE name LIKE 'burst-%'").fetchone()[0]
    ok = db.execute("SELECT count(*) FROM jobs WHERE name LIKE 'burst-%' AND status='succeeded'").fetchone()[0]
    multi = db.execute("SELECT count(*) FROM (SELECT job_id FROM runs JOIN jobs ON jobs.id=runs.job_id "
                       "WHERE jobs.name LIKE 'burst-%' GROUP BY job_id HAVING count(*) > 1)").fetchone()[0]
    print(f"database: burst jobs {jobs} (distinct names {distinct}), succeeded {ok}, "
          f"jobs with more than one run {multi}; lost = {a.burst - ok}")


if __name__ == "__main__":
    main()
