#!/usr/bin/env python3
"""Careless and hostile clients against a running anna-server, and how the others fare.

    python3 anna-kvs/scripts/attacks.py PORT PID

Against the server on 127.0.0.1:PORT (process PID): first the p50/p99 latency of a small GET
on one connection with nothing else going on; then the same while, one after the other,
(1) ATTACKERS clients each pipeline 1024 GETs of a 512 KiB value and never read, and
(2) ATTACKERS clients each send most of a 12 MB SET and stall. Reports the GET latency during
each, the server's RSS before and at its peak, and how many clients the server closed
(INFO stats). Start the server with the limits to test, e.g.
    anna-server --port 7441 --dir "" --maxmemory-clients 200mb
"""

import socket
import sys
import threading
import time

PORT = int(sys.argv[1])
PID = int(sys.argv[2])
ATTACKERS = 20


def rss_kb(field="VmRSS"):
    with open(f"/proc/{PID}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def command(*args):
    out = b"*%d\r\n" % len(args)
    for arg in args:
        out += b"$%d\r\n%s\r\n" % (len(arg), arg)
    return out


def connect():
    sock = socket.create_connection(("127.0.0.1", PORT))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def call(sock, *args):
    sock.sendall(command(*args))
    data = b""
    while not data.endswith(b"\r\n") or data.count(b"\r\n") < (2 if data.startswith(b"$") and not data.startswith(b"$-1") else 1):
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise EOFError
        data += chunk
    return data


def info(field):
    sock = connect()
    sock.sendall(command(b"INFO", b"stats"))
    time.sleep(0.05)
    text = sock.recv(1 << 20).decode(errors="replace")
    sock.close()
    for line in text.split("\r\n"):
        if line.startswith(field + ":"):
            return int(line.split(":")[1])
    return -1


def latencies(seconds):
    sock = connect()
    out = []
    end = time.time() + seconds
    while time.time() < end:
        t = time.perf_counter()
        call(sock, b"GET", b"small")
        out.append(time.perf_counter() - t)
    sock.close()
    out.sort()
    pct = lambda p: out[min(len(out) - 1, int(len(out) * p))] * 1000
    return pct(0.5), pct(0.99), out[-1] * 1000, len(out)


def never_reading():
    socks = []
    for _ in range(ATTACKERS):
        sock = connect()
        sock.sendall(command(b"GET", b"big") * 1024)
        socks.append(sock)
    return socks


def partial_sets():
    socks = []
    for _ in range(ATTACKERS):
        sock = connect()
        size = 12 << 20
        header = b"*3\r\n$3\r\nSET\r\n$7\r\npartial\r\n$%d\r\n" % size
        sock.sendall(header + b"x" * (size - (1 << 20)))
        socks.append(sock)
    return socks


def main():
    setup = connect()
    call(setup, b"SET", b"small", b"x")
    call(setup, b"SET", b"big", b"v" * (512 << 10))
    idle = latencies(3)
    print(f"idle: GET p50/p99/max {idle[0]:.2f}/{idle[1]:.2f}/{idle[2]:.1f} ms ({idle[3]} GETs), RSS {rss_kb() >> 10} MiB")
    for name, attack in [("1024 pipelined 512 KiB GETs, never read", never_reading), ("12 MB SETs sent but for the last MiB", partial_sets)]:
        closed_before = info("client_output_buffer_limit_disconnections") + info("evicted_clients")
        before = rss_kb()
        result = {}
        thread = threading.Thread(target=lambda: result.update(lat=latencies(4)))
        thread.start()
        time.sleep(0.3)
        socks = attack()
        thread.join()
        closed = info("client_output_buffer_limit_disconnections") + info("evicted_clients") - closed_before
        lat = result["lat"]
        print(f"{ATTACKERS} clients x {name}: GET p50/p99/max {lat[0]:.2f}/{lat[1]:.2f}/{lat[2]:.1f} ms; RSS {before >> 10} -> peak {rss_kb('VmHWM') >> 10} MiB, now {rss_kb() >> 10} MiB; {closed} clients closed by the server")
        for sock in socks:
            sock.close()
        time.sleep(1)


main()
