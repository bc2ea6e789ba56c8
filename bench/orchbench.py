"""Shared helpers for the orchestrator benchmarks (not tests).

A daemon launcher with a temporary config on loopback, a minimal keep-alive
HTTP/1.1 client with pipelining, /proc readers (VmRSS, fd count) and small
statistics. Standard library only.

Every daemon started here is stopped in Daemon.stop() (SIGTERM, then SIGKILL
after a bound); job processes it still listed as running are killed by pid
only after their /proc start time was checked against the one recorded while
the daemon was alive.

Authentication: each daemon gets `server.token_file = <dir>/token` (the daemon
creates it at first start); Daemon.start() reads it and every Conn to that
port sends `Authorization: Bearer <token>` and `Host: 127.0.0.1:<port>` (the
daemon answers 401 without the token and 421 to a Host that is not a name of
the server).
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


# port -> API token of the daemon listening there (filled by Daemon.start()).
TOKENS = {}


def orch_bin():
    b = os.environ.get("ORCH_BIN", os.path.join(REPO, "build-rel", "orchestrator"))
    if not os.access(b, os.X_OK):
        sys.exit(f"orchestrator binary not found at {b}; build it (see bench/README.md) "
                 "or set ORCH_BIN")
    return b


def work_dir(name):
    base = os.environ.get("BENCH_TMP", "/tmp/orch-bench")
    d = os.path.join(base, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def build_c(src_name, out_dir):
    """Compiles bench/<src_name>.c with -O2 into out_dir; returns the path."""
    out = os.path.join(out_dir, src_name)
    subprocess.run(["cc", "-O2", "-o", out, os.path.join(HERE, src_name + ".c")], check=True)
    return out


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def machine():
    load = open("/proc/loadavg").read().split()[:3]
    return f"nproc={os.cpu_count()} kernel={os.uname().release} loadavg={' '.join(load)}"


# ---------------------------------------------------------------- /proc


def proc_status(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def rss_kib(pid):
    return proc_status(pid, "VmRSS")


def fd_count(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def start_time(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            s = f.read()
        return int(s[s.rindex(")") + 2:].split()[19])
    except (OSError, ValueError):
        return None


# ---------------------------------------------------------------- stats


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


# ---------------------------------------------------------------- HTTP


def cgroup2_mount():
    """Where cgroup v2 is mounted, or "" (field 5 of /proc/self/mountinfo)."""
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            if right.split(" ", 1)[0] == "cgroup2":
                return left.split(" ")[4].replace("\\040", " ")
    return ""


def remove_cgroup_tree(root):
    """Kills what is left under a daemon's cgroup root and removes it."""
    if not root or not os.path.isdir(root):
        return
    try:
        with open(os.path.join(root, "cgroup.kill"), "w") as f:
            f.write("1")
    except OSError:
        pass
    deadline = time.time() + 10
    while time.time() < deadline:
        with open(os.path.join(root, "cgroup.events")) as f:
            if "populated 0" in f.read():
                break
        time.sleep(0.02)
    for name in os.listdir(root):
        if os.path.isdir(os.path.join(root, name)):
            try:
                os.rmdir(os.path.join(root, name))
            except OSError:
                pass
    for d in (root, os.path.dirname(root)):
        try:
            os.rmdir(d)
        except OSError:
            pass


class Conn:
    """One keep-alive HTTP/1.1 connection. Responses must carry Content-Length."""

    def __init__(self, port, host="127.0.0.1", timeout=30):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.host = host
        self.port = port

    def close(self):
        self.sock.close()

    @staticmethod
    def encode(method, path, body=None, port=None):
        """`port` names the daemon: its Host and, once started, its token."""
        head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1{f':{port}' if port else ''}\r\n"
        if port in TOKENS:
            head += f"Authorization: Bearer {TOKENS[port]}\r\n"
        if body is None:
            return (head + "\r\n").encode()
        if not isinstance(body, (bytes, bytearray)):
            body = json.dumps(body).encode()
        return (head + "Content-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    def read_response(self):
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed by server")
            self.buf += chunk
        head, rest = self.buf.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = 0
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                length = int(v)
        while len(rest) < length:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("connection closed mid-body")
            rest += chunk
        self.buf = rest[length:]
        return status, rest[:length]

    def request(self, method, path, body=None):
        self.sock.sendall(self.encode(method, path, body, self.port))
        return self.read_response()

    def get_json(self, path):
        st, body = self.request("GET", path)
        if st != 200:
            raise RuntimeError(f"GET {path}: {st} {body[:200]!r}")
        return json.loads(body)

    def pipeline(self, requests, window=64):
        """Sends encoded requests `window` at a time; returns the statuses."""
        statuses = []
        for i in range(0, len(requests), window):
            batch = requests[i:i + window]
            self.sock.sendall(b"".join(batch))
            for _ in batch:
                statuses.append(self.read_response()[0])
        return statuses


def submit_many(port, bodies, conns=4, window=64):
    """Submits the JSON bodies over `conns` keep-alive connections, pipelined.
    Returns {status: count}."""
    import threading
    reqs = [Conn.encode("POST", "/jobs", b, port) for b in bodies]
    shards = [reqs[i::conns] for i in range(conns)]
    results = [None] * conns

    def worker(i):
        c = Conn(port)
        try:
            results[i] = c.pipeline(shards[i], window)
        finally:
            c.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    counts = {}
    for r in results:
        for s in r or []:
            counts[s] = counts.get(s, 0) + 1
    return counts


def metric_histogram(text, name):
    """Parses a Prometheus histogram into ([(le, cumulative_count)], count, sum)."""
    buckets, count, total = [], 0, 0.0
    for line in text.splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
        elif line.startswith(name + "_count"):
            count = float(line.split()[-1])
        elif line.startswith(name + "_sum"):
            total = float(line.split()[-1])
    return buckets, count, total


def histogram_quantile(buckets, q):
    """Prometheus-style linear interpolation inside the bucket holding q."""
    if not buckets or buckets[-1][1] == 0:
        return float("nan")
    target = q * buckets[-1][1]
    prev_le, prev_c = 0.0, 0.0
    for le, c in buckets:
        if c >= target:
            if le == float("inf"):
                return prev_le
            if c == prev_c:
                return le
            return prev_le + (le - prev_le) * (target - prev_c) / (c - prev_c)
        prev_le, prev_c = le, c
    return prev_le


# ---------------------------------------------------------------- daemon


class Daemon:
    def __init__(self, name, max_concurrency=1, extra_server="", extra_supervisor="",
                 workdir=None, binary=None, log_dir=None, extra_store="", extra="",
                 wrapper=None):
        """`binary`: the orchestrator to run (default: orch_bin()); `log_dir`:
        where job logs go (default <dir>/logs); `extra_store` lines go into
        [store], `extra` (whole sections) at the end; `wrapper` runs before
        the binary (e.g. unshare for a PID namespace of its own)."""
        self.wrapper = wrapper or []
        self.dir = workdir or work_dir(name)
        self.log_dir = log_dir or os.path.join(self.dir, "logs")
        self.port = free_port()
        self.binary = binary
        self.proc = None
        self.cfg = os.path.join(self.dir, "orchestrator.toml")
        with open(self.cfg, "w") as f:
            f.write(f"""[server]
listen = "127.0.0.1:{self.port}"
token_file = "{self.dir}/token"
{extra_server}
[store]
path = "{self.dir}/q.db"
{extra_store}
[supervisor]
max_concurrency = {max_concurrency}
log_dir = "{self.log_dir}"
kill_grace_s = 2
shutdown_grace_s = 5
{extra_supervisor}
[log]
level = "warn"
{extra}
""")
        self.known_jobs = {}  # pid -> start_time of job processes seen running
        # Each daemon its own tree of run cgroups (the daemon locks its root).
        mount = cgroup2_mount()
        self.cgroup_root = (os.path.join(mount, "orch-bench", os.path.basename(self.dir))
                            if mount else "")

    @property
    def pid(self):
        return self.proc.pid

    def start(self, timeout=30):
        self.log = open(os.path.join(self.dir, "daemon.log"), "ab")
        env = dict(os.environ)
        if self.cgroup_root:
            env["ORCH_CGROUP_ROOT"] = self.cgroup_root
        self.proc = subprocess.Popen(self.wrapper + [self.binary or orch_bin(), "serve",
                                                     "--config", self.cfg],
                                     stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
                                     env=env)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}; see {self.dir}/daemon.log")
            try:
                c = Conn(self.port, timeout=2)
                st, _ = c.request("GET", "/readyz")
                c.close()
                if st == 200:
                    with open(os.path.join(self.dir, "token")) as f:
                        TOKENS[self.port] = f.read().strip()
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError("daemon not ready in time")

    def queue(self, conn=None):
        c = conn or Conn(self.port)
        try:
            return c.get_json("/queue")
        finally:
            if conn is None:
                c.close()

    def note_running(self, q=None):
        """Records (pid, start_time) of listed running jobs for the clean-up."""
        q = q or self.queue()
        for r in q["running"]:
            if r["pid"] and r["pid"] not in self.known_jobs:
                st = start_time(r["pid"])
                if st is not None:
                    self.known_jobs[r["pid"]] = st

    def wait_counts(self, pred, timeout, interval=0.01):
        """Polls GET /queue until pred(counts); returns (elapsed_s, counts)."""
        c = Conn(self.port)
        t0 = time.monotonic()
        try:
            while True:
                q = c.get_json("/queue")
                if pred(q["counts"]):
                    return time.monotonic() - t0, q["counts"]
                if time.monotonic() - t0 > timeout:
                    raise TimeoutError(f"counts {q['counts']} after {timeout}s")
                time.sleep(interval)
        finally:
            c.close()

    def post(self, path):
        c = Conn(self.port)
        try:
            return c.request("POST", path, b"")[0]
        finally:
            c.close()

    def daemon_pid(self):
        """The daemon itself: inside a wrapper such as unshare, its child."""
        if not self.wrapper:
            return self.proc.pid
        try:
            with open(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children") as f:
                kids = f.read().split()
            return int(kids[0]) if kids else self.proc.pid
        except OSError:
            return self.proc.pid

    def stop(self, timeout=20):
        if self.proc is None:
            return
        if self.proc.poll() is None:
            target = self.daemon_pid()
            os.kill(target, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                # SIGKILL to a PID namespace's init takes its jobs with it.
                os.kill(target, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()
        # Safety net: job processes the daemon left behind, identified by
        # pid *and* start time (never by a bare pid).
        for pid, st in self.known_jobs.items():
            if start_time(pid) == st:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except OSError:
                    pass
        self.proc = None
        self.log.close()
        remove_cgroup_tree(self.cgroup_root)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
