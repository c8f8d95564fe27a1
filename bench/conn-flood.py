#!/usr/bin/env python3
"""conn-flood: /healthz latency from a second client address while one address holds
many idle connections (docs/http.md, "Connections").

    python3 bench/conn-flood.py --port 8080 [--hold 5000] [--probes 200]

Opens --hold TCP connections from --hold-from (default 127.0.0.1) that send nothing, then
times --probes GET /healthz from --probe-from (default 127.0.0.2; all of 127/8 is loopback
on Linux), each on a new connection, one at a time, each given --timeout seconds. Prints
how many held connections the server kept open, the probes' latency percentiles and how
many got no answer. Raises its own open-files limit (the server needs max_connections +
room too: tiercache raises its soft limit toward the hard one). A figure, not a test.
"""
import argparse
import os
import resource
import selectors
import socket
import time


def probe(port, src, timeout):
    """Seconds for one GET /healthz on a new connection from src, or None (no answer)."""
    t0 = time.perf_counter()
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.bind((src, 0))
        s.connect(("127.0.0.1", port))
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            d = s.recv(4096)
            if not d:
                return None
            data += d
        return time.perf_counter() - t0 if data.startswith(b"HTTP/1.1 200") else None
    except OSError:
        return None
    finally:
        s.close()


def gauge(port):
    """tiercache_http_connections from the server's /metrics, asked from 127.0.0.3 ("no
    answer" when it does not come within 5 s)."""
    data = b""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=5,
                                     source_address=("127.0.0.3", 0))
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        while True:
            d = s.recv(65536)
            if not d:
                break
            data += d
        s.close()
    except OSError:
        return "no answer"
    for line in data.decode("latin1").splitlines():
        if line.startswith("tiercache_http_connections "):
            return line.split()[1]
    return "?"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--hold", type=int, default=5000)
    ap.add_argument("--hold-from", default="127.0.0.1")
    ap.add_argument("--probe-from", default="127.0.0.2")
    ap.add_argument("--probes", type=int, default=200)
    ap.add_argument("--timeout", type=float, default=5.0)
    ap.add_argument("--settle", type=float, default=5.0,
                    help="seconds to wait after the held connections are made, before probing")
    ap.add_argument("--metrics", action="store_true",
                    help="also read tiercache_http_connections from /metrics (from 127.0.0.3)")
    a = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = a.hold + 256
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))

    held = []
    sel = selectors.DefaultSelector()
    t0 = time.perf_counter()
    for _ in range(a.hold):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((a.hold_from, 0))
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", a.port))
        except BlockingIOError:
            pass
        except OSError as e:
            print(f"connect failed after {len(held)}: {e}")
            s.close()
            break
        held.append(s)
        sel.register(s, selectors.EVENT_READ)
    # until the server has accepted or refused them all (no more closes for a second, and
    # --settle seconds at least)
    closed = set()
    quiet = 0
    while (quiet < 4 or time.perf_counter() - t0 < a.settle) and time.perf_counter() - t0 < 60:
        n = len(closed)
        for key, _ in sel.select(timeout=0.25):
            try:
                if key.fileobj.recv(1) == b"":
                    closed.add(key.fileobj)
            except OSError:
                closed.add(key.fileobj)
            if key.fileobj in closed:
                sel.unregister(key.fileobj)
        quiet = quiet + 1 if len(closed) == n else 0
    print(f"held from {a.hold_from}: {len(held)} connected, {len(closed)} closed by the server "
          f"within {time.perf_counter() - t0:.1f} s, {len(held) - len(closed)} still open"
          + (f" (server: {gauge(a.port)} connections)" if a.metrics else ""))

    lat, lost = [], 0
    for _ in range(a.probes):
        r = probe(a.port, a.probe_from, a.timeout)
        if r is None:
            lost += 1
        else:
            lat.append(r * 1000)
    lat.sort()
    pct = lambda p: lat[min(len(lat) - 1, int(p / 100 * len(lat)))] if lat else float("nan")
    print(f"/healthz from {a.probe_from}: {len(lat)} of {a.probes} answered, {lost} not within "
          f"{a.timeout:g} s; ms p50 {pct(50):.2f} p90 {pct(90):.2f} p99 {pct(99):.2f} "
          f"max {lat[-1] if lat else float('nan'):.2f}")
    if a.metrics:
        print(f"server after the probes: {gauge(a.port)} connections")
    for s in held:
        s.close()


if __name__ == "__main__":
    main()
