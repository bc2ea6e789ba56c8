#!/usr/bin/env python3
"""Store off the loop (issue 12): the synchronous store (a baseline build, e.g.
d4e191f) against the store executor (writer thread with group commit, reader
thread), both binaries in the same run, alternating old/new.

Each measurement starts a fresh daemon (fresh database) per binary:

  submit  wrk -t1 -c32 -d10s --latency, POST /jobs {"argv":["/bin/true"]}
          with the queue paused (only the submit path runs). Requests/s,
          non-2xx, and p50/p99 twice: as wrk reports them (after wrk's
          coordinated-omission correction, which turns each rare stall into
          thousands of synthetic samples) and as timed (the correction undone
          from wrk's histogram, see raw_latency). /healthz is probed during
          the run as well. Then the queued rows (GET /queue, then sqlite3 on the
          stopped daemon's database) are compared with the 2xx answers wrk
          counted: wrk stops at the deadline with up to one request per
          connection in flight, which the daemon may still commit, so
          0 <= rows - 2xx <= connections is the check.
  burst   /healthz latency during a burst of 10,000 submits over 32
          connections (load_bench's burst workers and probe: 4 processes x 8
          threads, one request at a time per connection; a probe process,
          one keep-alive connection, one GET /healthz every 2 ms), with the
          jobs running on max_concurrency 32 as in load_bench (no sleepers,
          no idle connections). Afterwards every job must succeed once.
  paused  the same burst with the queue paused (submit path only), as a
          diagnostic: it separates the store from the spawns.
  e2e     10,000 /bin/true end to end at max_concurrency 2
          (spawn_bench.orchestrator: submit while paused, then the clock runs
          from resume until all succeeded).

The per-thread CPU of the daemon over each window is printed (threads in
creation order: loop = the main thread, then, in the new design,
checkpointer, writer, reader; old: loop, checkpointer).

    B=/work/wt-base/build-rel/orchestrator
    nice -n -19 python3 bench/async_store_bench.py --baseline $B
    nice -n -19 python3 bench/async_store_bench.py     # new binary only (ORCH_BIN)

Without --baseline (or ORCH_BASELINE_BIN) only the new binary is measured and
the ratio columns stay empty.
"""

import argparse
import multiprocessing as mp
import os
import queue
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import load_bench as lb
import orchbench as ob
import spawn_bench as sb

TICK = os.sysconf("SC_CLK_TCK")

LUA = """-- POST /jobs {"argv":["/bin/true"]} with the daemon's token
wrk.method = "POST"
wrk.path = "/jobs"
wrk.body = '{"argv":["/bin/true"]}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer TOKEN"

-- The latency histogram as wrk reports it (after its correction), one
-- "value_us count" line per non-empty bucket, for raw_latency() to undo.
function done(summary, latency, requests)
  local f = io.open("HIST", "w")
  f:write(string.format("summary %d %d\\n", summary.duration, summary.requests))
  for i = 1, #latency do
    local v, c = latency(i)
    f:write(string.format("%d %d\\n", v, c))
  end
  f:close()
end
"""


def raw_latency(path, conns):
    """wrk 4 'corrects' its latency histogram for coordinated omission before
    reporting it (stats_correct in wrk.c/stats.c): with e = duration /
    (requests / connections), every sample n >= 2e adds synthetic samples at
    n - e, n - 2e, ... (all > e). A few 40 ms stalls then become thousands of
    samples and wrk's p95/p99 describe a client that sends at a fixed rate, not
    the requests that were made. This undoes it exactly (the synthetic samples
    at n come from the raw samples at n + k*e) and returns the percentiles of
    the requests wrk actually timed; their count must equal wrk's request
    count."""
    with open(path) as f:
        _, duration, requests = f.readline().split()
        hist = sorted(((int(v), int(c)) for v, c in (line.split() for line in f)), reverse=True)
    duration, requests = int(duration), int(requests)
    e = duration // (requests // conns) if requests // conns else 0
    raw, acc = {}, {}
    for v, c in hist:  # descending
        if e and v > e:
            own = c - acc.get(v % e, 0)
            raw[v] = own
            if v >= 2 * e:
                acc[v % e] = acc.get(v % e, 0) + own
        else:
            raw[v] = c
    n = sum(raw.values())
    values = sorted(raw.items())

    def pctl(p):  # wrk's stats_percentile rank
        rank = round(p / 100.0 * n + 0.5)
        total = 0
        for v, c in values:
            total += c
            if total >= rank:
                return v / 1000.0
        return float("nan")

    mean = sum(v * c for v, c in values) / n / 1000.0 if n else float("nan")
    return {"n": n, "requests": requests, "interval_us": e, "p50": pctl(50), "p99": pctl(99),
            "p999": pctl(99.9), "max": values[-1][0] / 1000.0 if values else float("nan"),
            "mean": mean}


def on_sigterm(signum, frame):
    # Turns SIGTERM into an exception so that every `finally` stops its daemon.
    raise SystemExit(128 + signum)


def thread_cpu(pid):
    """{tid: cpu seconds} for every thread of pid."""
    out = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                s = f.read()
        except OSError:
            continue
        fields = s[s.rindex(")") + 2:].split()
        out[int(tid)] = (int(fields[11]) + int(fields[12])) / TICK
    return out


def cpu_split(pid, before, after, secs):
    """'loop 97% checkpointer 1% ...' over a window of secs. Threads are named
    by creation order (tid order): the old daemon has the loop and the WAL
    checkpointer, the new one also the store executor's writer and reader."""
    names = {2: ["loop", "checkpointer"], 4: ["loop", "checkpointer", "writer", "reader"]}
    tids = sorted(after)
    label = names.get(len(tids), [f"t{i + 1}" for i in range(len(tids))])
    return " ".join(f"{label[i]} {100 * (after[tid] - before.get(tid, 0.0)) / secs:.0f}%"
                    for i, tid in enumerate(tids))


def cpu_times():
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    f = [int(x) for x in open("/proc/stat").readline().split()[1:]]
    idle = f[3] + f[4]  # idle + iowait
    return sum(f) - idle, sum(f)


def machine_busy(before, after):
    """Cores busy over a window (0..nproc), any process."""
    busy, total = after[0] - before[0], after[1] - before[1]
    return os.cpu_count() * busy / total if total else float("nan")


def logs_for(a, name):
    """Job logs of one daemon: under --log-dir when given (emptied first)."""
    if not a.log_dir:
        return None
    d = os.path.join(a.log_dir, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


# ---------------------------------------------------------------- /healthz probe


class Probes:
    """A /healthz probe on the daemon under test and, as a control, one on an
    idle daemon of the same binary: what the control sees during the load is
    the machine's (the probe's own and a loop's scheduling delay on 2 busy
    cores), not the measured daemon's."""

    def __init__(self, d, binary, label):
        self.ctx = mp.get_context("fork")
        self.idle = ob.Daemon(f"async-idle-{label}", binary=binary)
        self.stop = self.ctx.Event()
        self.qs = [self.ctx.Queue(), self.ctx.Queue()]
        self.procs = []
        try:
            self.idle.start()
            for port, q in zip((d.port, self.idle.port), self.qs):
                p = self.ctx.Process(target=lb.health_probe, args=(port, self.stop, q), daemon=True)
                self.procs.append(p)
                p.start()
        except BaseException:
            self.close()
            raise
        time.sleep(0.3)

    def finish(self, t0, t1):
        """Stops both probes; returns (test, control) dicts for [t0, t1]."""
        self.stop.set()
        res = []
        for q in self.qs:
            samples, errors = q.get(timeout=30)
            lat = [ms for t, ms in samples if t0 <= t <= t1]
            res.append({"n": len(lat), "p50": ob.pct(lat, 50), "p99": ob.pct(lat, 99),
                        "max": max(lat) if lat else float("nan"), "errors": errors})
        for p in self.procs:
            p.join()
        return res

    def close(self):
        self.stop.set()
        for p in self.procs:
            if p.is_alive():
                p.terminate()
                p.join()
        self.idle.stop()


def probe_text(h, c):
    return (f"/healthz n={h['n']} p50 {h['p50']:.2f} ms p99 {h['p99']:.2f} ms max {h['max']:.2f} ms "
            f"errors {h['errors']} (control on an idle daemon: p50 {c['p50']:.2f} p99 "
            f"{c['p99']:.2f} ms)")


# ---------------------------------------------------------------- 1. submits/s


def parse_wrk(out):
    r = {"raw": out, "non2xx": 0, "socket_errors": ""}
    for line in out.splitlines():
        s = line.split()
        if " requests in " in line:
            r["requests"] = int(s[0])
        elif line.startswith("Requests/sec:"):
            r["rps"] = float(s[1])
        elif len(s) == 2 and s[0] in ("50%", "99%"):
            v = s[1]
            r[s[0]] = (float(v[:-2]) if v.endswith("ms") else
                       float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000)
        elif "Non-2xx" in line:
            r["non2xx"] = int(s[-1])
        elif "Socket errors" in line:
            r["socket_errors"] = line.strip()
    return r


def m_submit(binary, label, a):
    d = ob.Daemon(f"async-submit-{label}", max_concurrency=2, binary=binary,
                  log_dir=logs_for(a, f"submit-{label}"))
    d.start()
    probes = None
    try:
        assert d.post("/queue/pause") == 200
        lua = os.path.join(d.dir, "submit.lua")
        hist = os.path.join(d.dir, "latency.hist")
        with open(lua, "w") as f:
            f.write(LUA.replace("TOKEN", ob.TOKENS[d.port]).replace("HIST", hist))
        probes = Probes(d, binary, label)
        c0, t0, m0 = thread_cpu(d.pid), time.monotonic(), cpu_times()
        ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        out = subprocess.run(["wrk", "-t1", f"-c{a.conns}", f"-d{a.seconds}s", "--latency",
                              "-s", lua, f"http://127.0.0.1:{d.port}/jobs"],
                             capture_output=True, text=True, check=True).stdout
        ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t1 = time.monotonic()
        secs = t1 - t0
        cpu = cpu_split(d.pid, c0, thread_cpu(d.pid), secs)
        wrk_cpu = (ru1.ru_utime + ru1.ru_stime - ru0.ru_utime - ru0.ru_stime) / secs
        cpu += f"; wrk {100 * wrk_cpu:.0f}%; machine busy {machine_busy(m0, cpu_times()):.2f} cores"
        r = parse_wrk(out)
        r["lat"] = raw_latency(hist, a.conns)
        # wrk needs a moment to connect: the window starts 0.2 s in.
        r["health"], r["control"] = probes.finish(t0 + 0.2, t1)
        # Let the requests that were in flight at wrk's deadline finish.
        last, stable = -1, 0
        while stable < 5:
            q = d.queue()["counts"]["queued"]
            stable = stable + 1 if q == last else 0
            last = q
            time.sleep(0.1)
        r["queued_api"] = last
        # Group commit (new daemon only): writes per commit over the run.
        c = ob.Conn(d.port)
        try:
            metrics = c.request("GET", "/metrics")[1].decode()
        finally:
            c.close()
        vals = {}
        for line in metrics.splitlines():
            k, _, v = line.partition(" ")
            if k in ("orchestrator_store_commits_total", "orchestrator_store_committed_writes_total"):
                vals[k] = float(v)
        r["commits"] = vals
    finally:
        if probes:
            probes.close()
        d.stop()
    db = sqlite3.connect(os.path.join(d.dir, "q.db"))
    r["rows"] = db.execute("SELECT count(*) FROM jobs").fetchone()[0]
    r["rows_queued"] = db.execute("SELECT count(*) FROM jobs WHERE status='queued'").fetchone()[0]
    db.close()
    r["ok"] = r["requests"] - r["non2xx"]
    r["extra"] = r["rows"] - r["ok"]
    r["consistent"] = (r["rows"] == r["rows_queued"] == r["queued_api"]
                       and 0 <= r["extra"] <= a.conns and r["non2xx"] == 0
                       and r["lat"]["n"] == r["requests"])
    r["cpu"] = cpu
    print(f"  submit {label}: {r['rps']:,.0f} req/s p50 {r['50%']:.2f} ms p99 {r['99%']:.2f} ms; "
          f"wrk requests {r['requests']}, non-2xx {r['non2xx']} {r['socket_errors']}; "
          f"rows {r['rows']} (queued {r['rows_queued']}, GET /queue {r['queued_api']}), "
          f"rows - 2xx = {r['extra']} (in flight at the deadline, <= {a.conns}) "
          f"{'OK' if r['consistent'] else 'MISMATCH'}; cpu {cpu}", flush=True)
    if len(r["commits"]) == 2:
        n_c, n_w = r["commits"]["orchestrator_store_commits_total"], \
            r["commits"]["orchestrator_store_committed_writes_total"]
        print(f"    group commit: {n_w:,.0f} writes in {n_c:,.0f} commits = "
              f"{n_w / max(n_c, 1):.1f} per commit", flush=True)
    u = r["lat"]
    print(f"    latency as timed (wrk's correction undone, {u['n']} samples, e={u['interval_us']} us): "
          f"p50 {u['p50']:.2f} ms p99 {u['p99']:.2f} ms p99.9 {u['p999']:.2f} ms max {u['max']:.2f} ms "
          f"mean {u['mean']:.3f} ms (Little: {1000 * a.conns / r['rps']:.3f} ms)", flush=True)
    print(f"    during wrk: {probe_text(r['health'], r['control'])}", flush=True)
    return r


# ---------------------------------------------------------------- 2. burst


def m_burst(binary, label, a, paused):
    name = "paused" if paused else "burst"
    d = ob.Daemon(f"async-{name}-{label}", max_concurrency=a.free, binary=binary,
                  log_dir=logs_for(a, f"{name}-{label}"))
    d.start()
    ctx = mp.get_context("fork")
    procs = []
    probes = None
    try:
        if paused:
            assert d.post("/queue/pause") == 200
        probes = Probes(d, binary, label)
        bodies = [{"argv": ["/bin/true"], "name": f"burst-{i}"} for i in range(a.burst)]
        nproc = 4
        bq = ctx.Queue()
        c0, t0, m0 = thread_cpu(d.pid), time.monotonic(), cpu_times()
        workers = [ctx.Process(target=lb.burst_worker,
                               args=(d.port, bodies[i::nproc], a.conns // nproc, bq), daemon=True)
                   for i in range(nproc)]
        procs += workers
        for w in workers:
            w.start()
        statuses = {}
        got = 0
        while got < nproc:
            try:
                r = bq.get(timeout=1)
            except queue.Empty:
                # A worker killed before it reported (e.g. by a Ctrl-C that
                # reached the whole process group) would leave us waiting.
                if not any(w.is_alive() for w in workers) and bq.empty():
                    raise RuntimeError(f"burst workers exited; {got}/{nproc} reported")
                continue
            for k, v in r.items():
                statuses[k] = statuses.get(k, 0) + v
            got += 1
        t1 = time.monotonic()
        burst_s = t1 - t0
        cpu = cpu_split(d.pid, c0, thread_cpu(d.pid), burst_s)
        cpu += f"; machine busy {machine_busy(m0, cpu_times()):.2f} cores"
        for w in workers:
            w.join()
        health, control = probes.finish(t0, t1)
        if paused:
            _, counts = d.wait_counts(lambda c: c["queued"] >= a.burst, timeout=60, interval=0.1)
        else:
            _, counts = d.wait_counts(lambda c: c["succeeded"] + c["failed"] >= a.burst,
                                      timeout=600, interval=0.2)
        drain_s = time.monotonic() - t0
    finally:
        for p in procs:
            if p.is_alive():
                p.terminate()
                p.join()
        if probes:
            probes.close()
        d.stop()
    db = sqlite3.connect(os.path.join(d.dir, "q.db"))
    want = "queued" if paused else "succeeded"
    done = db.execute(f"SELECT count(*) FROM jobs WHERE status='{want}'").fetchone()[0]
    multi = db.execute("SELECT count(*) FROM (SELECT job_id FROM runs GROUP BY job_id "
                       "HAVING count(*) > 1)").fetchone()[0]
    db.close()
    r = {"rate": a.burst / burst_s, "secs": burst_s, "statuses": statuses, "health": health,
         "control": control, "done": done, "multi": multi, "drain_s": drain_s, "cpu": cpu,
         "consistent": (statuses == {201: a.burst} and done == a.burst and multi == 0
                        and health["errors"] == 0)}
    print(f"  {name} {label}: {a.burst} submits in {burst_s:.1f}s = {r['rate']:,.0f}/s "
          f"{statuses}; {probe_text(health, control)}; {want} {done}, jobs with >1 run {multi}"
          f"{'' if paused else f', all done {drain_s:.1f}s after the start'} "
          f"{'OK' if r['consistent'] else 'MISMATCH'}; cpu {cpu}", flush=True)
    return r


# ---------------------------------------------------------------- 3. end to end


def m_e2e(binary, label, a):
    r = sb.orchestrator(a.jobs, 2, ["/bin/true"], binary=binary,
                        log_dir=logs_for(a, f"e2e-{label}"))
    print(f"  e2e {label}: {r['rate']:,.0f} jobs/s at max_concurrency 2 ({r['secs']:.1f}s); "
          f"daemon cpu {r['cpu_ms_per_job']:.3f} ms/job; submit (pipelined) "
          f"{r['submit_rate']:,.0f}/s", flush=True)
    return r


# ---------------------------------------------------------------- main

# (measure key, row label, value from a result, better, target text)
ROWS = [
    ("submit", "submits/s (wrk, queue paused)", lambda r: r["rps"], "higher", ">= 3x old"),
    ("submit", "submit p50 ms, as timed", lambda r: r["lat"]["p50"], "lower", ""),
    ("submit", "submit p99 ms, as timed", lambda r: r["lat"]["p99"], "lower", ""),
    ("submit", "submit max ms", lambda r: r["lat"]["max"], "lower", ""),
    ("submit", "submit p99 ms, wrk's report (corrected)", lambda r: r["99%"], "lower", ""),
    ("submit", "submit non-2xx", lambda r: r["non2xx"], None, "0"),
    ("submit", "/healthz p99 ms during wrk", lambda r: r["health"]["p99"], "lower", ""),
    ("submit", "  control: idle daemon p99 ms", lambda r: r["control"]["p99"], None, ""),
    ("burst", "/healthz p99 ms, burst, jobs run", lambda r: r["health"]["p99"], "lower",
     "new < 5 ms"),
    ("burst", "/healthz p50 ms, burst, jobs run", lambda r: r["health"]["p50"], "lower", ""),
    ("burst", "  control: idle daemon p99 ms", lambda r: r["control"]["p99"], None, ""),
    ("burst", "burst submits/s, jobs run", lambda r: r["rate"], "higher", ""),
    ("paused", "/healthz p99 ms, burst, paused", lambda r: r["health"]["p99"], "lower", ""),
    ("paused", "  control: idle daemon p99 ms", lambda r: r["control"]["p99"], None, ""),
    ("paused", "burst submits/s, paused", lambda r: r["rate"], "higher", ""),
    ("e2e", "e2e /bin/true jobs/s, max_concurrency 2", lambda r: r["rate"], "higher",
     ">= 1x old"),
    ("e2e", "e2e daemon CPU ms/job", lambda r: r["cpu_ms_per_job"], "lower", ""),
]


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, int) or abs(v) >= 100:
        return f"{v:,.0f}"
    return f"{v:.2f}"


def main():
    signal.signal(signal.SIGTERM, on_sigterm)
    ap = argparse.ArgumentParser()
    ap.add_argument("--baseline", default=os.environ.get("ORCH_BASELINE_BIN"),
                    help="the old (synchronous store) binary; default $ORCH_BASELINE_BIN")
    ap.add_argument("--binary", default=None, help="the new binary; default $ORCH_BIN or "
                    "build-rel/orchestrator")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--seconds", type=int, default=10, help="wrk duration")
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--burst", type=int, default=10000)
    ap.add_argument("--free", type=int, default=32, help="max_concurrency during the burst")
    ap.add_argument("--jobs", type=int, default=10000, help="end-to-end jobs")
    ap.add_argument("--skip", default="", help="comma list of: submit,burst,paused,e2e")
    ap.add_argument("--log-dir", default=None,
                    help="put the jobs' log directories under this directory (e.g. "
                    "/dev/shm/orch-bench-logs) instead of next to the database")
    a = ap.parse_args()
    if a.binary is None:
        a.binary = ob.orch_bin()
    skip = set(filter(None, a.skip.split(",")))
    bins = {"new": a.binary}
    if a.baseline:
        if not os.access(a.baseline, os.X_OK):
            sys.exit(f"baseline binary not executable: {a.baseline}")
        bins["old"] = a.baseline
    print(f"# async_store_bench rounds={a.rounds} wrk -t1 -c{a.conns} -d{a.seconds}s "
          f"burst={a.burst} free={a.free} jobs={a.jobs} {ob.machine()}", flush=True)
    for k, b in bins.items():
        print(f"# {k}: {b}", flush=True)

    measures = [("submit", lambda b, l: m_submit(b, l, a)),
                ("burst", lambda b, l: m_burst(b, l, a, False)),
                ("paused", lambda b, l: m_burst(b, l, a, True)),
                ("e2e", lambda b, l: m_e2e(b, l, a))]
    results = [{} for _ in range(a.rounds)]  # round -> (measure, label) -> result
    consistent = True
    for rnd in range(a.rounds):
        order = ["old", "new"] if rnd % 2 == 0 else ["new", "old"]
        order = [k for k in order if k in bins]
        for key, fn in measures:
            if key in skip:
                continue
            print(f"round {rnd + 1} {key}: loadavg {loadavg()}", flush=True)
            for label in order:
                r = fn(bins[label], label)
                consistent &= r.get("consistent", True)
                results[rnd][(key, label)] = r

    head = "| measure | target |"
    sep = "| --- | --- |"
    for rnd in range(a.rounds):
        head += f" old r{rnd + 1} | new r{rnd + 1} | new/old r{rnd + 1} |"
        sep += " --- | --- | --- |"
    print("\n" + head + "\n" + sep)
    for key, name, get, better, target in ROWS:
        if key in skip:
            continue
        line = f"| {name} | {target} |"
        for rnd in range(a.rounds):
            old = results[rnd].get((key, "old"))
            new = results[rnd].get((key, "new"))
            vo = get(old) if old else None
            vn = get(new) if new else None
            ratio = f"{vn / vo:.2f}" if vo and vn is not None and better else "–"
            line += f" {fmt(vo)} | {fmt(vn)} | {ratio} |"
        print(line)
    print(f"\nloadavg at the end {loadavg()}; all counts consistent: {consistent}")
    if not consistent:
        sys.exit(1)


if __name__ == "__main__":
    main()
