#!/usr/bin/env python3
"""Appends and syncs on this machine's disk, the way the append-only files do under
`appendfsync always`: one small write and one fdatasync at a time, per file.

Prints syncs per second for one file and for N files synced from N threads at once (one per
actor), each both appending (the file grows at every write) and writing in place into space
allocated ahead with fallocate (what the logs do now). If N files together sync about N times
as often as one, one log per actor costs nothing against one shared log per node.

    python3 anna-kvs/scripts/fsync-parallel.py [directory] [files] [syncs per file]
"""
import os
import sys
import threading
import time

directory = sys.argv[1] if len(sys.argv) > 1 else "."
files = int(sys.argv[2]) if len(sys.argv) > 2 else 2
syncs = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
record = b"x" * 200


def run(count, allocate):
    paths = [os.path.join(directory, f"fsync-parallel-{os.getpid()}-{i}") for i in range(count)]
    fds = []
    for path in paths:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        if allocate:
            os.posix_fallocate(fd, 0, syncs * len(record) + 4096)
            os.fsync(fd)
        fds.append(fd)

    def loop(fd):
        for _ in range(syncs):
            os.write(fd, record)
            os.fdatasync(fd)

    threads = [threading.Thread(target=loop, args=(fd,)) for fd in fds]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    for fd, path in zip(fds, paths):
        os.close(fd)
        os.remove(path)
    return count * syncs / elapsed


for allocate in (False, True):
    one = run(1, allocate)
    many = run(files, allocate)
    how = "allocated ahead" if allocate else "appending"
    print(f"{how:16} 1 file: {one:8.0f} syncs/s   {files} files: {many:8.0f} syncs/s   ({many / one:.2f}x)")
