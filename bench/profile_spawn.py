#!/usr/bin/env python3
"""Where the daemon's time goes while it drains N `/bin/true` jobs.

Same set-up as spawn_bench.py (submit while paused, then resume), with one
profiler attached to the daemon's pid for the drain only:

    python3 bench/profile_spawn.py --tool perf     # perf record -e cpu-clock -g; top symbols
    python3 bench/profile_spawn.py --tool strace   # strace -c -f: syscall counts and time
    python3 bench/profile_spawn.py --tool off      # just the drain, plus fsync count from /proc

Use a binary with symbols for perf (RelWithDebInfo, e.g. ORCH_BIN=build/orchestrator).
"""

import argparse
import os
import signal
import subprocess
import time

import orchbench as ob


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--jobs", type=int, default=3000)
    ap.add_argument("--conc", type=int, default=2)
    ap.add_argument("--tool", choices=["perf", "offcpu", "trace", "strace", "off"], default="perf")
    ap.add_argument("--set", default="", help="extra [store] lines, e.g. 'synchronous = \"off\"'")
    a = ap.parse_args()
    d = ob.Daemon(f"profile-{a.tool}", max_concurrency=a.conc)
    if a.set:
        with open(d.cfg) as f:
            text = f.read()
        with open(d.cfg, "w") as f:
            f.write(text.replace("[store]\n", "[store]\n" + a.set.replace(";", "\n") + "\n"))
    d.start()
    out = os.path.join(d.dir, a.tool + ".out")
    prof = None
    try:
        assert d.post("/queue/pause") == 200
        assert ob.submit_many(d.port, [{"argv": ["/bin/true"]}] * a.jobs) == {201: a.jobs}
        if a.tool == "perf":
            prof = subprocess.Popen(["perf", "record", "-e", "cpu-clock", "-F", "2999", "-g",
                                     "-o", out, "-p", str(d.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif a.tool == "offcpu":
            prof = subprocess.Popen(["perf", "record", "-e", "sched:sched_switch", "-g",
                                     "-o", out, "-t", str(d.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif a.tool == "trace":
            prof = subprocess.Popen(["perf", "trace", "-s", "-o", out, "-t", str(d.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        elif a.tool == "strace":
            prof = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(d.pid)],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        io0 = open(f"/proc/{d.pid}/io").read()
        assert d.post("/queue/resume") == 200
        secs, counts = d.wait_counts(lambda c: c["succeeded"] >= a.jobs, timeout=300)
        io1 = open(f"/proc/{d.pid}/io").read()
        print(f"# {ob.machine()} jobs={a.jobs} conc={a.conc} tool={a.tool}")
        print(f"drained in {secs:.2f}s = {a.jobs / secs:.0f} jobs/s")
        for l0, l1 in zip(io0.splitlines(), io1.splitlines()):
            k = l0.split(":")[0]
            print(f"  /proc/pid/io {k}: +{int(l1.split()[1]) - int(l0.split()[1])}")
    finally:
        if prof:
            prof.send_signal(signal.SIGINT)
            prof.wait(60)
        d.stop()
    if a.tool == "perf":
        rep = subprocess.run(["perf", "report", "-i", out, "--stdio", "--no-children",
                              "--sort", "dso,sym", "-g", "none", "--percent-limit", "0.7"],
                             capture_output=True, text=True).stdout
        print("\n".join(l for l in rep.splitlines() if l and not l.startswith("#"))[:6000])
        rep = subprocess.run(["perf", "report", "-i", out, "--stdio", "--children",
                              "--sort", "sym", "-g", "none", "--percent-limit", "3"],
                             capture_output=True, text=True).stdout
        print("\n# inclusive (children) >= 3%")
        print("\n".join(l for l in rep.splitlines() if l and not l.startswith("#"))[:8000])
        print(f"\nfull data: perf report -i {out}")
    elif a.tool == "offcpu":
        rep = subprocess.run(["perf", "report", "-i", out, "--stdio", "--children",
                              "--sort", "sym", "-g", "none", "--percent-limit", "3"],
                             capture_output=True, text=True).stdout
        print("# where the loop thread blocks (share of context switches, inclusive)")
        print("\n".join(l for l in rep.splitlines() if l and not l.startswith("#"))[:8000])
    else:
        print(open(out).read())


if __name__ == "__main__":
    main()
