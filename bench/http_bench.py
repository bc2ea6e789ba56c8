#!/usr/bin/env python3
"""HTTP: wrk against GET /queue and GET /healthz in the same run, with
--rows terminal jobs in the store (default 100,000, each with one closed run)
and --running `sleep 600` jobs running (default 100, max_concurrency equal).

The terminal rows are bulk-inserted with SQL while the daemon is stopped (the
daemon creates the schema first; the job_counts triggers keep the counters
right), then the daemon is restarted and the sleepers submitted through the
API. wrk runs with one thread and --conns connections for --seconds each;
the order is healthz, queue, healthz, queue and the table reports each run.

    python3 bench/http_bench.py
    python3 bench/http_bench.py --conns 4 --seconds 5
"""

import argparse
import os
import sqlite3
import subprocess
import time

import orchbench as ob


def bulk_insert(path, rows):
    db = sqlite3.connect(path)
    now = int(time.time() * 1000) - 3600_000
    db.execute("BEGIN")
    db.execute(f"""
      WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {rows})
      INSERT INTO jobs (name, argv, status, attempts, created_at, updated_at, started_at,
                        finished_at, exit_code, outcome)
      SELECT 'bulk', '["/bin/true"]',
             CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END, 1,
             {now} + i, {now} + i + 5, {now} + i + 1, {now} + i + 5,
             CASE WHEN i % 10 = 0 THEN 3 ELSE 0 END,
             CASE WHEN i % 10 = 0 THEN 'failed' ELSE 'succeeded' END FROM n""")
    db.execute("""
      INSERT INTO runs (job_id, attempt, incarnation, boot_id, pid, start_time, started_at,
                        ended_at, outcome, reason, exit_code)
      SELECT id, 1, 'bulk', 'bulk', 1000 + id % 30000, id, started_at, finished_at, outcome,
             'exit ' || exit_code, exit_code FROM jobs""")
    db.execute("UPDATE jobs SET run_id = (SELECT id FROM runs WHERE runs.job_id = jobs.id)")
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()


def wrk(port, path, conns, seconds):
    auth = ["-H", f"Authorization: Bearer {ob.TOKENS[port]}"] if port in ob.TOKENS else []
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", *auth,
                          f"http://127.0.0.1:{port}{path}"],
                         capture_output=True, text=True, check=True).stdout
    res = {"raw": out}
    for line in out.splitlines():
        s = line.split()
        if line.startswith("Requests/sec:"):
            res["rps"] = float(s[1])
        elif len(s) == 2 and s[0] in ("50%", "90%", "99%"):
            v = s[1]
            ms = float(v[:-2]) if v.endswith("ms") else (
                float(v[:-2]) / 1000 if v.endswith("us") else float(v[:-1]) * 1000)
            res[s[0]] = ms
        elif "Non-2xx" in line or "Socket errors" in line:
            res.setdefault("errors", []).append(line.strip())
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100000)
    ap.add_argument("--running", type=int, default=100)
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--seconds", type=int, default=10)
    a = ap.parse_args()
    print(f"# http_bench rows={a.rows} running={a.running} wrk -t1 -c{a.conns} "
          f"-d{a.seconds}s {ob.machine()}", flush=True)
    d = ob.Daemon("http", max_concurrency=a.running)
    d.start()
    d.stop()
    t0 = time.monotonic()
    bulk_insert(os.path.join(d.dir, "q.db"), a.rows)
    print(f"bulk insert of {a.rows} rows: {time.monotonic() - t0:.1f}s", flush=True)
    d.start()
    results = []
    try:
        assert ob.submit_many(d.port, [{"argv": ["sleep", "600"]}] * a.running) == {201: a.running}
        d.wait_counts(lambda c: c["running"] >= a.running, timeout=60, interval=0.1)
        q = d.queue()
        d.note_running(q)
        c = ob.Conn(d.port)
        size = len(c.request("GET", "/queue")[1])
        # server-side cost of one /queue, without wrk: 200 sequential requests
        t1 = time.perf_counter()
        for _ in range(200):
            c.request("GET", "/queue")
        per_queue = (time.perf_counter() - t1) / 200 * 1e3
        t1 = time.perf_counter()
        for _ in range(200):
            c.request("GET", "/healthz")
        per_health = (time.perf_counter() - t1) / 200 * 1e3
        c.close()
        print(f"counts {q['counts']}; /queue body {size} bytes; sequential round trip "
              f"/queue {per_queue:.3f} ms, /healthz {per_health:.3f} ms", flush=True)
        for path in ("/healthz", "/queue", "/healthz", "/queue"):
            r = wrk(d.port, path, a.conns, a.seconds)
            results.append((path, r))
            print(f"{path}: {r.get('rps', 0):,.0f} req/s p50 {r.get('50%')} ms "
                  f"p99 {r.get('99%')} ms {r.get('errors', '')}", flush=True)
        rss = ob.rss_kib(d.pid)
    finally:
        d.stop()
    h = [r["rps"] for p, r in results if p == "/healthz"]
    qq = [r["rps"] for p, r in results if p == "/queue"]
    print(f"\n| endpoint | req/s | p50 ms | p99 ms | errors |")
    print("| --- | --- | --- | --- | --- |")
    for path, r in results:
        print(f"| GET {path} | {r['rps']:,.0f} | {r['50%']:.2f} | {r['99%']:.2f} | "
              f"{'; '.join(r.get('errors', [])) or 'none'} |")
    print(f"\n/queue / /healthz rate ratio: {sum(qq) / sum(h):.2f}; daemon VmRSS {rss} KiB")


if __name__ == "__main__":
    main()
