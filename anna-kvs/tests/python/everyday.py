"""redis-py's everyday API against anna-server: run by tests/redis_py.rs with the server's
port. Every check is an assert; the last line printed is "everyday api ok"."""

import sys
import time

import redis

port = int(sys.argv[1])
r = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)

# Test suites start from an empty database.
assert r.flushdb() is True
assert r.dbsize() == 0
assert r.ping() is True

# Strings, with expiry options.
assert r.set("greeting", "hello") is True
assert r.get("greeting") == "hello"
assert r.set("greeting", "again", nx=True) is None
assert r.set("greeting", "again", xx=True, get=True) == "hello"
assert r.set("fresh", "v", nx=True, ex=100) is True
assert 99 <= r.ttl("fresh") <= 100
assert r.set("brief", "v", px=150) is True
assert r.pttl("brief") > 0
assert r.setex("session", 60, "data") is True
assert r.ttl("session") == 60
assert r.expire("greeting", 30) is True
assert r.ttl("greeting") == 30
assert r.persist("greeting") is True
assert r.ttl("greeting") == -1
assert r.ttl("missing") == -2
assert r.getex("session", ex=10) == "data"
assert r.ttl("session") == 10
assert r.mset({"a": "1", "b": "2"}) is True
assert r.mget("a", "b", "nope") == ["1", "2", None]
assert r.incr("counter") == 1
assert r.incrby("counter", 41) == 42
assert r.getrange("greeting", 0, 2) == "aga"
assert r.append("greeting", "!") == 6
assert r.strlen("greeting") == 6

# Sets.
assert r.sadd("tags", "x", "y", "z") == 3
assert r.smembers("tags") == {"x", "y", "z"}
assert r.sismember("tags", "y")
assert r.srem("tags", "y") == 1
assert r.scard("tags") == 2
assert r.type("tags") == "set"

# Expired keys are gone.
time.sleep(0.3)
assert r.get("brief") is None
assert r.exists("brief") == 0

# Keyspace.
names = {"greeting", "fresh", "session", "a", "b", "counter", "tags"}
assert set(r.scan_iter()) == names
assert set(r.scan_iter(match="s*")) == {"session"}
assert set(r.scan_iter(count=2)) == names
assert set(r.scan_iter(_type="set")) == {"tags"}
assert set(r.keys("*")) == names
assert r.randomkey() in names
assert r.dbsize() == len(names)
assert r.delete("a", "b", "nope") == 2
assert r.exists("a", "counter") == 1

# Pipelines: plain, and transactions (MULTI/EXEC: nothing runs before EXEC).
with r.pipeline(transaction=False) as pipe:
    pipe.set("p1", "1").incr("p2").get("p1")
    assert pipe.execute() == [True, 1, "1"]
other = redis.Redis(host="127.0.0.1", port=port, decode_responses=True)
with r.pipeline() as pipe:
    pipe.set("t1", "one")
    pipe.incrby("t2", 5)
    pipe.expire("t1", 100)
    assert other.get("t1") is None
    assert pipe.execute() == [True, 5, True]
assert other.get("t1") == "one"
assert other.ttl("t1") == 100

# Databases: a client on database 3 sees only its own keys; flushdb empties only it.
db3 = redis.Redis(host="127.0.0.1", port=port, db=3, decode_responses=True)
assert db3.dbsize() == 0
assert db3.set("greeting", "in three") is True
assert db3.get("greeting") == "in three"
assert r.get("greeting") == "again!"
assert db3.flushdb() is True
assert db3.get("greeting") is None
assert r.get("greeting") == "again!"
assert r.info("keyspace")["db0"]["keys"] == r.dbsize()

# FLUSHALL empties every database; writes after it stay.
assert db3.set("k", "v") is True
assert r.flushall() is True
assert r.dbsize() == 0 and db3.dbsize() == 0
assert r.set("after", "flush") is True
assert r.get("after") == "flush"

print("everyday api ok")
