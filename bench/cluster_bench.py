#!/usr/bin/env python3
"""Several hosts on one PostgreSQL queue (issue 14), on this machine.

Starts a throw-away PostgreSQL 15 (tests/support/pg_server.sh with
ORCH_PG_DURABLE=1: fsync and synchronous_commit on, as PostgreSQL ships;
initdb as the postgres user, socket in its own directory, TCP on 127.0.0.1)
and measures:

  claim    claim latency with 1M rows over TCP loopback, 3 nodes claiming at
           once (build-rel/bench/pg_claim_bench)
  scale    N `sleep 0.2` jobs drained by 1 node, then by 3 nodes, each at
           max_concurrency 4, every daemon in its own PID namespace; the
           ratio of their rates
  rescue   kill -9 of a node's PID namespace with 4 jobs running: time until
           all 4 run again on the other nodes (lease_s 2 and 5)

    python3 bench/cluster_bench.py                   # everything
    python3 bench/cluster_bench.py --skip claim --jobs 240

Needs a Release build with -DORCH_BENCH=ON (build-rel) and root.
"""

import argparse
import json
import os
import signal
import subprocess
import time

import orchbench as ob

SCRIPT = os.path.join(ob.REPO, "tests", "support", "pg_server.sh")
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


class Postgres:
    def __init__(self):
        self.dir = f"/tmp/orch-bench-pg-{os.getpid()}"
        # Durable settings (fsync on), unlike the tests' throw-away server.
        env = dict(os.environ, ORCH_PG_DURABLE="1")
        subprocess.run(["bash", SCRIPT, "start", self.dir, str(os.getpid())], check=True, env=env)
        with open(os.path.join(self.dir, "port")) as f:
            self.port = int(f.read())
        self.n = 0

    def new_db(self, tcp=False):
        self.n += 1
        name = f"bench{self.n}"
        subprocess.run(["psql", "-q", self.url("postgres"), "-c", f"CREATE DATABASE {name}"],
                       check=True)
        return self.tcp_url(name) if tcp else self.url(name)

    def url(self, db):
        return f"postgresql:///{db}?host={self.dir}&port={self.port}&user=postgres"

    def tcp_url(self, db):
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def stop(self):
        subprocess.run(["bash", SCRIPT, "stop", self.dir])


def node(name, url, conc=4, lease_s=10, tick_ms=1000):
    return ob.Daemon(
        f"cluster-{name}", max_concurrency=conc, wrapper=UNSHARE,
        extra_store=f'backend = "postgres"\nurl = "{url}"',
        extra_supervisor="backoff_base_s = 0.1\nbackoff_max_s = 0.5",
        extra=f'[cluster]\nnode_id = "{name}"\nlease_s = {lease_s}\n'
              f'[reaper]\ninterval_ms = {tick_ms}')


def drain(pg, n_nodes, jobs, conc):
    url = pg.new_db()
    nodes = [node(f"s{n_nodes}-{i}", url, conc) for i in range(n_nodes)]
    try:
        for d in nodes:
            d.start()
        assert nodes[0].post("/queue/pause") == 200
        statuses = ob.submit_many(nodes[0].port, [{"argv": ["sleep", "0.2"]}] * jobs)
        assert statuses == {201: jobs}, statuses
        # Every node sees the pause before the clock starts.
        time.sleep(1.5)
        assert nodes[0].post("/queue/resume") == 200
        secs, counts = nodes[0].wait_counts(lambda c: c["succeeded"] >= jobs, timeout=300)
        return jobs / secs
    finally:
        for d in nodes:
            d.stop()


def rescue(pg, lease_s):
    url = pg.new_db()
    dead = node(f"dead{lease_s}", url, 4, lease_s, tick_ms=100)
    others = [node(f"alive{lease_s}-{i}", url, 4, lease_s, tick_ms=100) for i in range(2)]
    try:
        dead.start()
        c = ob.Conn(dead.port)
        ids = []
        for _ in range(4):
            st, body = c.request("POST", "/jobs", {"argv": ["sleep", "60"]})
            assert st == 201, (st, body)
            ids.append(json.loads(body)["id"])
        deadline = time.time() + 30
        while dead.queue()["counts"]["running"] < 4 or any(
                r["pid"] is None for r in dead.queue()["running"]):
            assert time.time() < deadline
            time.sleep(0.02)
        for d in others:
            d.start()
        t0 = time.monotonic()
        os.kill(dead.daemon_pid(), signal.SIGKILL)  # the namespace and its jobs with it
        watcher = ob.Conn(others[0].port)
        while True:
            running = [r for r in watcher.get_json("/queue")["running"]
                       if r["id"] in ids and r["node_id"] != f"dead{lease_s}" and r["pid"]]
            if len(running) == 4:
                return time.monotonic() - t0
            assert time.monotonic() - t0 < 10 * lease_s + 30, "not rescued"
            time.sleep(0.01)
    finally:
        for d in [dead] + others:
            d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip", default="", help="comma list of: claim,scale,rescue")
    ap.add_argument("--jobs", type=int, default=240)
    ap.add_argument("--rows", type=int, default=1000000)
    a = ap.parse_args()
    skip = set(filter(None, a.skip.split(",")))
    print(f"# cluster_bench {ob.machine()}", flush=True)
    pg = Postgres()
    try:
        if "claim" not in skip:
            b = os.path.join(ob.REPO, "build-rel", "bench", "pg_claim_bench")
            out = subprocess.run([b, pg.new_db(tcp=True), str(a.rows), "20000", "3000", "3"],
                                 capture_output=True, text=True, check=True).stdout
            print(out, end="", flush=True)
        if "scale" not in skip:
            one = drain(pg, 1, a.jobs, 4)
            print(f"1 node,  max_concurrency 4: {one:.1f} jobs/s ({a.jobs} x sleep 0.2; "
                  f"ideal {4 / 0.2:.0f})", flush=True)
            three = drain(pg, 3, a.jobs, 4)
            print(f"3 nodes, max_concurrency 4: {three:.1f} jobs/s (ideal {12 / 0.2:.0f})",
                  flush=True)
            print(f"3 nodes / 1 node: {three / one:.2f}x", flush=True)
        if "rescue" not in skip:
            for lease_s in (2, 5):
                t = rescue(pg, lease_s)
                print(f"kill -9 of a node -> its 4 jobs running elsewhere: {t:.2f} s "
                      f"(lease_s {lease_s}; {t / lease_s:.2f} x lease_s)", flush=True)
    finally:
        pg.stop()


if __name__ == "__main__":
    main()
