#!/usr/bin/env python3
"""A set grown to MEMBERS members on a 3-node anna cluster, and the same set in redis-server.

Run by bigset.sh (which starts the servers). Grows the set with SADDs of PER_SADD members
through node 0 (pipelined, PIPELINE commands at a time), waits until every node counts every
member, then reports: load time, time until all nodes agree, peak RSS of each node against
redis-server's RSS for the same set, bytes node 0 sent its peers per SADD and per member, and
what an SMEMBERS of the whole set costs: its time, and the p50/p99/max latency of a small GET
on another connection while it runs.
"""

import socket
import subprocess
import sys
import threading
import time

MEMBERS = int(sys.argv[1])
PER_SADD = 1000
PIPELINE = 20
ANNA = [int(p) for p in sys.argv[2].split(",")]
ANNA_PIDS = [int(p) for p in sys.argv[3].split(",")]
REDIS = int(sys.argv[4])
REDIS_PID = int(sys.argv[5])


def command(*args):
    out = b"*%d\r\n" % len(args)
    for arg in args:
        arg = arg if isinstance(arg, bytes) else str(arg).encode()
        out += b"$%d\r\n%s\r\n" % (len(arg), arg)
    return out


class Conn:
    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2 :]
        return data

    def reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind in (b"+", b"-"):
            return rest.decode()
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n)
        if kind in (b"*", b"~"):
            n = int(rest)
            # Big arrays: count and skip the elements (decoding 2M into a list costs seconds).
            for _ in range(n):
                self.reply()
            return n
        raise ValueError(line)

    def call(self, *args):
        self.sock.sendall(command(*args))
        return self.reply()


def info(port, field):
    text = Conn(port).call("INFO")
    for line in text.decode().split("\r\n") if isinstance(text, bytes) else []:
        if line.startswith(field + ":"):
            return line.split(":", 1)[1]
    return None


def rss_kb(pid, field="VmRSS"):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def load(port):
    conn = Conn(port)
    start = time.time()
    n = 0
    while n < MEMBERS:
        batch = b""
        sent = 0
        for _ in range(PIPELINE):
            if n >= MEMBERS:
                break
            members = [b"member:%09d" % i for i in range(n, min(n + PER_SADD, MEMBERS))]
            batch += command(b"SADD", b"big", *members)
            n += len(members)
            sent += 1
        conn.sock.sendall(batch)
        for _ in range(sent):
            answer = conn.reply()
            assert isinstance(answer, int), answer
    return time.time() - start


def smembers_stall(port):
    """SMEMBERS of the whole set by redis-cli (another process, so this one's GIL does not
    pace it); small GETs on another connection meanwhile."""
    Conn(port).call("SET", "small", "x")
    getter = Conn(port)
    latencies = []
    done = threading.Event()

    def gets():
        while not done.is_set():
            t = time.perf_counter()
            getter.call("GET", "small")
            latencies.append(time.perf_counter() - t)

    thread = threading.Thread(target=gets)
    thread.start()
    time.sleep(0.5)
    before = len(latencies)
    t = time.perf_counter()
    out = subprocess.run(["redis-cli", "-p", str(port), "SMEMBERS", "big"], capture_output=True).stdout
    took = time.perf_counter() - t
    during = latencies[before:]
    time.sleep(0.2)
    done.set()
    thread.join()
    idle = sorted(latencies[:before])
    during = sorted(during) or [0.0]
    pct = lambda xs, p: xs[min(len(xs) - 1, int(len(xs) * p))] * 1000
    return out.count(b"\n"), took, (pct(idle, 0.5), pct(idle, 0.99)), (pct(during, 0.5), pct(during, 0.99), during[-1] * 1000, len(during))


def main():
    redis_took = load(REDIS)
    redis_rss = rss_kb(REDIS_PID)
    redis_used = int(info(REDIS, "used_memory"))
    print(f"redis-server: {MEMBERS} members loaded in {redis_took:.1f} s, RSS {redis_rss // 1024} MiB, used_memory {redis_used >> 20} MiB")

    anna_took = load(ANNA[0])
    start = time.time()
    while True:
        counts = [Conn(p).call("SCARD", "big") for p in ANNA]
        if all(c == MEMBERS for c in counts):
            break
        if time.time() - start > 300:
            print(f"not converged after 300 s: {counts}")
            break
        time.sleep(0.2)
    converged = time.time() - start
    print(f"anna, 3 nodes: loaded through node 0 in {anna_took:.1f} s; every node counts {MEMBERS} {converged:.1f} s later")
    for i, (port, pid) in enumerate(zip(ANNA, ANNA_PIDS)):
        peak = rss_kb(pid, "VmHWM")
        fields = {f: info(port, f) for f in ["anna_peer_bytes_out", "anna_gossip_deltas_out", "anna_gossip_parts_out", "anna_refused_malformed", "anna_gossip_given_up", "anna_gossip_undeliverable", "anna_gossip_resent"]}
        print(f"  node {i}: peak RSS {peak // 1024} MiB ({peak / redis_rss:.2f}x redis RSS), RSS now {rss_kb(pid) // 1024} MiB, {fields}")
    sent = int(info(ANNA[0], "anna_peer_bytes_out"))
    sadds = MEMBERS // PER_SADD
    print(f"  node 0 sent its peers {sent >> 20} MiB: {sent // sadds} bytes per SADD of {PER_SADD}, {sent / MEMBERS / 2:.1f} per member and peer")

    for name, port, pid in [("redis-server", REDIS, REDIS_PID), ("anna node 0", ANNA[0], ANNA_PIDS[0])]:
        before = rss_kb(pid)
        busy = int(info(port, "anna_request_ms") or 0)
        count, took, idle, during = smembers_stall(port)
        if name.startswith("anna"):
            # The actors' request time over the run: the GETs' share is a few ms.
            print(f"  actors' request time during it: {int(info(port, 'anna_request_ms')) - busy} ms")
        print(f"{name}: SMEMBERS of {count} members in {took:.2f} s; RSS {before // 1024} -> peak {rss_kb(pid, 'VmHWM') // 1024} MiB; GET on another connection p50/p99 {idle[0]:.2f}/{idle[1]:.2f} ms idle, {during[0]:.2f}/{during[1]:.2f} ms (max {during[2]:.0f}, {during[3]} GETs) during")


main()
