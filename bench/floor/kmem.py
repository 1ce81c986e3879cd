#!/usr/bin/env python3
"""bench/floor/kmem.py [--build DIR] [--conns N] [--rounds R]: the kernel's memory per idle
TCP socket on this machine, beside the server's user-space memory (issue 15 §1, last bullet).

ternd runs on core 0, tern-bench --idle on core 1 holds N authenticated WebSocket connections
over loopback. /proc/slabinfo and /proc/meminfo are read before the connections (A), while they
are held (B) and after they are gone (C); the kernel's share is B - (A + C) / 2, which cancels
a slow drift of the other engineers' work on the machine, and it is repeated R times. Both ends
of every connection live in this kernel, so the per-socket figure is the delta over 2N
sockets; the server-side share is about half of the pair. TIME_WAIT buckets (tw_sock_TCP) and
request socks belong to the closing and opening, not to an idle socket, and are left out.
Prints figures; asserts nothing. Needs root for /proc/slabinfo."""
import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ap = argparse.ArgumentParser()
ap.add_argument("--build", default=os.path.join(os.path.dirname(__file__), "..", "..", "build"))
ap.add_argument("--conns", type=int, default=8000)
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--hold", default="8s")
a = ap.parse_args()
build = os.path.abspath(a.build)
SKIP = {"tw_sock_TCP", "tw_sock_TCPv6", "request_sock_TCP", "request_sock_TCPv6"}


def slabs():
    out = {}
    with open("/proc/slabinfo") as f:
        for line in f:
            if line.startswith(("slabinfo", "#")):
                continue
            p = line.split()
            out[p[0]] = int(p[1]) * int(p[3])  # active objects × object size
    return out


def meminfo():
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, v = line.split(":")
            out[k] = int(v.split()[0]) * 1024
    return out


def snap():
    return slabs(), meminfo()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def established(port):
    r = subprocess.run(["ss", "-Htn", "state", "established", f"( sport = :{port} )"], capture_output=True, text=True)
    return len([x for x in r.stdout.splitlines() if x.strip()])


results = []
for rnd in range(1, a.rounds + 1):
    port = free_port()
    d = tempfile.mkdtemp(prefix="tern-kmem.")
    srv = subprocess.Popen(
        ["taskset", "-c", "0", f"{build}/ternd", "--listen", f"127.0.0.1:{port}", "--data-dir", f"{d}/data",
         "--auth-hash-cost", "test", "--allow-insecure-test-settings", "--log-level", "warn",
         "--limits-conn-per-ip", "1000000", "--limits-conn-rate-per-ip", "1000000/1s",
         "--limits-auth-rate-per-ip", "1000000/1s", "--auth-hash-queue", "1000000"],
        stderr=open(f"{d}/ternd.log", "w"))
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.1)
    time.sleep(1)
    A = snap()
    bench = subprocess.Popen(
        ["taskset", "-c", "1", f"{build}/tern-bench", "--server", f"http://127.0.0.1:{port}", "--server-pid", str(srv.pid),
         "--users", str(a.conns), "--idle", "--duration", a.hold, "--register-concurrency", "64", "--quiet",
         "--json", f"{d}/idle.json"], stdout=open(f"{d}/bench.out", "w"), stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while established(port) < a.conns and bench.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(1.5)
    held = established(port)
    B = snap()
    bench.wait()
    import json
    j = json.load(open(f"{d}/idle.json"))
    srv.terminate()
    srv.wait()
    time.sleep(3)
    C = snap()
    shutil.rmtree(d, ignore_errors=True)
    names = set(A[0]) | set(B[0]) | set(C[0])
    per = {n: B[0].get(n, 0) - (A[0].get(n, 0) + C[0].get(n, 0)) / 2 for n in names if n not in SKIP}
    slab_total = sum(per.values())
    mem = {k: B[1][k] - (A[1][k] + C[1][k]) / 2 for k in ("Slab", "SUnreclaim", "SReclaimable", "MemAvailable")}
    rss = j.get("idle", {}).get("rss_per_conn_kib") or j.get("server", {}).get("rss_per_conn_kib")
    results.append((held, slab_total, per, mem, j))
    print(f"round {rnd}: {held} connections held ({2 * held} sockets in this kernel)")
    print(f"  slab objects (active × size, tw/request socks left out): {slab_total / 1024:,.0f} KiB = "
          f"{slab_total / (2 * held):,.0f} B per socket, {slab_total / held / 1024:,.2f} KiB per connection (both ends)")
    print(f"  /proc/meminfo Slab: {mem['Slab'] / 1024:,.0f} KiB = {mem['Slab'] / (2 * held):,.0f} B per socket; "
          f"MemAvailable fell {-mem['MemAvailable'] / (2 * held):,.0f} B per socket")
    top = sorted(per.items(), key=lambda kv: -kv[1])[:8]
    print("  largest caches, bytes per socket: " + ", ".join(f"{n} {v / (2 * held):,.0f}" for n, v in top))
    idle = j.get("idle", {})
    print(f"  ternd user space (tern-bench --idle): {json.dumps(idle)[:300]}")
    sys.stdout.flush()

if results:
    per_sock = [r[1] / (2 * r[0]) for r in results if r[0]]
    print(f"kernel slab per idle socket: median {statistics.median(per_sock):,.0f} B over {len(per_sock)} rounds "
          f"({', '.join(f'{x:,.0f}' for x in per_sock)}); load {open('/proc/loadavg').read().split()[0]}")
