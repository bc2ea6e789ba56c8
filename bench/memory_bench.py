#!/usr/bin/env python3
"""Memory and descriptors: the daemon idle, then with N running `sleep` jobs.

VmRSS, RssAnon, RssFile from /proc/<pid>/status, open fds from
/proc/<pid>/fd, mapped shared objects from /proc/<pid>/maps. For comparison,
task-spooler's server idle (if `tsp` is installed).

    python3 bench/memory_bench.py               # 1000 x `sleep 60`
    python3 bench/memory_bench.py --running 200
"""

import argparse
import os
import resource
import subprocess
import time

import orchbench as ob


def snapshot(pid):
    libs = set()
    for line in open(f"/proc/{pid}/maps"):
        parts = line.split()
        if len(parts) >= 6 and ".so" in parts[5]:
            libs.add(os.path.basename(parts[5]))
    pss = None
    for line in open(f"/proc/{pid}/smaps_rollup"):
        if line.startswith("Pss:"):
            pss = int(line.split()[1])
    return {"Pss": pss, "VmRSS": ob.proc_status(pid, "VmRSS"), "RssAnon": ob.proc_status(pid, "RssAnon"),
            "RssFile": ob.proc_status(pid, "RssFile"), "fds": ob.fd_count(pid),
            "threads": ob.proc_status(pid, "Threads"), "libs": len(libs)}


def top_mappings(pid, k=10):
    rss, cur = {}, None
    for line in open(f"/proc/{pid}/smaps"):
        p = line.split()
        if not p[0].endswith(":"):
            cur = os.path.basename(p[5]) if len(p) >= 6 else "[anon]"
        elif p[0] == "Rss:":
            rss[cur] = rss.get(cur, 0) + int(p[1])
    return sorted(rss.items(), key=lambda kv: -kv[1])[:k]


def fmt(s):
    return (f"VmRSS {s['VmRSS'] / 1024:.1f} MiB (anon {s['RssAnon'] / 1024:.1f}, "
            f"file {s['RssFile'] / 1024:.1f}); Pss {s['Pss'] / 1024:.1f} MiB; fds {s['fds']}; threads {s['threads']}; "
            f"shared objects mapped {s['libs']}")


def tsp_idle(wd):
    env = dict(os.environ, TS_SOCKET=os.path.join(wd, "tsp.sock"), TMPDIR=wd)
    subprocess.run(["tsp", "-S", "1"], env=env, check=True)  # starts the server
    try:
        time.sleep(0.5)
        ss = subprocess.run(["ss", "-xlpn"], capture_output=True, text=True).stdout
        for line in ss.splitlines():
            if env["TS_SOCKET"] in line and "pid=" in line:
                pid = int(line.split("pid=")[1].split(",")[0])
                return snapshot(pid)
    finally:
        subprocess.run(["tsp", "-K"], env=env)
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--running", type=int, default=1000)
    a = ap.parse_args()
    n = a.running
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8 * n + 1024)), hard))
    print(f"# memory_bench running={n} {ob.machine()}", flush=True)
    rows = []
    d = ob.Daemon("memory", max_concurrency=n)
    d.start()
    try:
        time.sleep(1.0)
        idle = snapshot(d.pid)
        print("largest resident mappings (KiB):", top_mappings(d.pid))
        rows.append(("orchestrator idle (1 s after /readyz)", idle))
        print("idle:", fmt(idle), flush=True)
        t0 = time.monotonic()
        assert ob.submit_many(d.port, [{"argv": ["sleep", "60"]}] * n) == {201: n}
        secs, _ = d.wait_counts(lambda c: c["running"] >= n, timeout=120, interval=0.1)
        d.note_running()
        time.sleep(1.0)
        busy = snapshot(d.pid)
        rows.append((f"orchestrator with {n} running `sleep 60`", busy))
        print(f"{n} running (reached in {time.monotonic() - t0:.1f}s):", fmt(busy), flush=True)
        # The same daemon once those are gone: does memory come back?
        c = ob.Conn(d.port)
        for r in d.queue(c)["running"]:
            c.request("POST", f"/jobs/{r['id']}/cancel", b"")
        c.close()
        d.wait_counts(lambda c: c["running"] == 0, timeout=60, interval=0.1)
        time.sleep(1.0)
        after = snapshot(d.pid)
        rows.append((f"orchestrator after cancelling the {n}", after))
        print("after cancel:", fmt(after), flush=True)
    finally:
        d.stop()
    t = tsp_idle(ob.work_dir("memory-tsp")) if subprocess.run(
        ["which", "tsp"], capture_output=True).returncode == 0 else None
    if t:
        rows.append(("task-spooler server idle", t))
        print("tsp server idle:", fmt(t))
    print("\n| process | VmRSS MiB | RssAnon MiB | RssFile MiB | Pss MiB | fds | threads | .so mapped |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, s in rows:
        print(f"| {name} | {s['VmRSS'] / 1024:.1f} | {s['RssAnon'] / 1024:.1f} | "
              f"{s['RssFile'] / 1024:.1f} | {s['Pss'] / 1024:.1f} | {s['fds']} | {s['threads']} | {s['libs']} |")


if __name__ == "__main__":
    main()
