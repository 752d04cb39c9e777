#!/usr/bin/env python3
"""Anti-entropy costs, measured on two anna-server nodes on this machine (loopback).

For each key count:
  1. load the keys through node A (pipelined SETs, 64-byte values) and wait until both nodes'
     `DEBUG DIGEST` agree;
  2. idle cost: CPU seconds and repair bytes per minute on both nodes with nothing differing
     (default repair interval, 10 s);
  3. restart-empty: stop node B (SIGTERM), delete its data directory, start it again, and time
     until its `DEBUG DIGEST` equals A's, with the bytes repair sent, next to the data size.

    cargo build --release -p anna-kvs --bin anna-server
    python3 anna-kvs/scripts/repair-bench.py 100000 1000000   # key counts

Needs redis-cli. Ports 7411/7412 (Redis), 7421/7422 (native), 7431/7432 (gossip).
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

SERVER = os.environ.get("ANNA_SERVER", "target/release/anna-server")
VALUE = "v" * 64
IDLE_SECONDS = float(os.environ.get("IDLE_SECONDS", "60"))


def cli(port, *args):
    out = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True)
    return out.stdout.strip()


def info(port):
    fields = {}
    for section in ("stats", "cpu", "memory"):
        for line in cli(port, "INFO", section).splitlines():
            if ":" in line:
                k, v = line.split(":", 1)
                fields[k] = v.strip()
    return fields


def start(name, port, native, gossip, peer, data, log):
    args = [SERVER, "--port", str(port), "--native-port", str(native), "--gossip-port",
            str(gossip), "--peers", f"127.0.0.1:{peer}", "--threads", "1", "--dir", data,
            "--log-level", "warn"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=open(log, "a"))
    for _ in range(600):
        if cli(port, "PING") == "PONG":
            return proc
        time.sleep(0.05)
    raise SystemExit(f"{name} did not start (see {log})")


def load(port, count):
    lines = []
    for i in range(count):
        key = f"key:{i:09d}"
        lines.append(f"*3\r\n$3\r\nSET\r\n${len(key)}\r\n{key}\r\n${len(VALUE)}\r\n{VALUE}\r\n")
    data = "".join(lines).encode()
    subprocess.run(["redis-cli", "-p", str(port), "--pipe"], input=data, capture_output=True,
                   check=True)
    return count * (len(f"key:{0:09d}") + len(VALUE))


def wait_equal(a, b, limit):
    start = time.monotonic()
    while time.monotonic() - start < limit:
        da, db = cli(a, "DEBUG", "DIGEST"), cli(b, "DEBUG", "DIGEST")
        if da == db and da and set(da) != {"0"}:
            return time.monotonic() - start
        time.sleep(0.05)
    return None


def cpu(fields):
    return float(fields.get("used_cpu_user", 0)) + float(fields.get("used_cpu_sys", 0))


def main():
    counts = [int(c) for c in sys.argv[1:]] or [100_000]
    rows = []
    for count in counts:
        work = tempfile.mkdtemp(prefix="anna-repair-")
        a = start("A", 7411, 7421, 7431, 7432, f"{work}/a", f"{work}/a.log")
        b = start("B", 7412, 7422, 7432, 7431, f"{work}/b", f"{work}/b.log")
        try:
            data = load(7411, count)
            if wait_equal(7411, 7412, 120) is None:
                raise SystemExit("the nodes never agreed after the load")
            time.sleep(2)
            before = [info(7411), info(7412)]
            time.sleep(IDLE_SECONDS)
            after = [info(7411), info(7412)]
            per_min = 60 / IDLE_SECONDS
            idle_cpu = sum(cpu(y) - cpu(x) for x, y in zip(before, after)) * per_min
            idle_bytes = sum(int(y["anna_repair_bytes_out"]) - int(x["anna_repair_bytes_out"])
                             for x, y in zip(before, after)) * per_min
            idle_rounds = sum(int(y["anna_repair_rounds"]) - int(x["anna_repair_rounds"])
                              for x, y in zip(before, after)) * per_min
            # Restart B empty.
            b.send_signal(signal.SIGTERM)
            b.wait(timeout=30)
            shutil.rmtree(f"{work}/b")
            sent_before = int(info(7411)["anna_repair_bytes_out"])
            restarted = time.monotonic()
            b = start("B", 7412, 7422, 7432, 7431, f"{work}/b", f"{work}/b.log")
            if wait_equal(7411, 7412, 600) is None:
                raise SystemExit("B never caught up")
            took = time.monotonic() - restarted  # from the start of the process
            sent = int(info(7411)["anna_repair_bytes_out"]) - sent_before
            sent += int(info(7412)["anna_repair_bytes_out"])
            keys_b = int(cli(7412, "DBSIZE"))
            rows.append((count, data, took, sent, keys_b, idle_cpu, idle_bytes, idle_rounds))
        finally:
            for proc in (a, b):
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
            shutil.rmtree(work, ignore_errors=True)
    print("| keys | data (keys+values) | restart-empty: caught up after | repair bytes | "
          "keys on B after | idle CPU s/min (2 nodes) | idle repair bytes/min | rounds/min |")
    print("|---|---|---|---|---|---|---|---|")
    for count, data, took, sent, keys_b, icpu, ibytes, irounds in rows:
        print(f"| {count:,} | {data / 1e6:.1f} MB | {took:.2f} s | {sent / 1e6:.1f} MB "
              f"({sent / data:.2f}x) | {keys_b:,} | {icpu:.2f} | {ibytes / 1e3:.1f} kB | "
              f"{irounds:.0f} |")


if __name__ == "__main__":
    main()
