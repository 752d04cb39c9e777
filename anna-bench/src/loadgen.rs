//! A Redis-protocol load generator: many pipelined connections, Zipf-distributed keys, YCSB
//! read/write mixes, and per-request latency in HDR histograms.
//!
//! Closed loop, like `redis-benchmark`: each connection sends a pipeline of `pipeline`
//! commands, then reads their replies; each request's latency runs from the write of its
//! pipeline to the parse of its reply. Worker threads each drive a set of connections, writing
//! every connection's pipeline before reading any, so the server sees them all at once.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::workload::{SimRng, Zipf};

/// One load run.
#[derive(Clone, Debug)]
pub struct LoadConfig {
    /// The server.
    pub addr: SocketAddr,
    /// Connections in all.
    pub connections: usize,
    /// Threads driving them.
    pub threads: usize,
    /// Commands in flight per connection.
    pub pipeline: usize,
    /// Distinct keys.
    pub keys: usize,
    /// Zipf exponent of key popularity.
    pub zipf: f64,
    /// Share of GETs (YCSB A 0.5, B 0.95, C 1.0); the rest are SETs.
    pub read_share: f64,
    /// SET value size.
    pub value_bytes: usize,
    /// Timed duration.
    pub duration: Duration,
}

/// What a run measured.
#[derive(Clone, Debug)]
pub struct LoadResult {
    /// Requests completed per second.
    pub ops_per_s: f64,
    /// Error replies and failed connections.
    pub errors: u64,
    /// Latency of every request, in microseconds.
    pub latency_us: Histogram<u64>,
}

impl LoadResult {
    /// A latency percentile in microseconds.
    pub fn percentile_us(&self, q: f64) -> u64 {
        self.latency_us.value_at_quantile(q)
    }
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// The key of rank `i`, 16 bytes like `redis-benchmark -r`'s `key:000000001234`.
pub fn key_name(i: usize) -> String {
    format!("key:{i:012}")
}

/// Appends a RESP command.
pub fn push_command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// The length of the first complete reply in `buf` and whether it is an error; `None` if the
/// reply is not complete yet. Handles the reply types GET and SET produce.
pub fn reply_len(buf: &[u8]) -> Option<Result<(usize, bool), String>> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = &buf[1..line_end];
    match buf[0] {
        b'+' | b':' => Some(Ok((line_end + 2, false))),
        b'-' => Some(Ok((line_end + 2, true))),
        b'$' => {
            let len: i64 = match std::str::from_utf8(line).ok().and_then(|s| s.parse().ok()) {
                Some(len) => len,
                None => return Some(Err("bad bulk length".into())),
            };
            if len < 0 {
                return Some(Ok((line_end + 2, false)));
            }
            let total = line_end + 2 + len as usize + 2;
            (buf.len() >= total).then_some(Ok((total, false)))
        }
        other => Some(Err(format!("unexpected reply byte {other:#04x}"))),
    }
}

/// Writes every key once (so reads hit), pipelined.
///
/// # Errors
/// Connection failures and error replies.
pub fn preload(addr: SocketAddr, keys: usize, value_bytes: usize) -> std::io::Result<()> {
    set_all(addr, (0..keys).map(key_name), &vec![b'x'; value_bytes])
}

/// `SET`s each key to `value`, 256 commands per pipeline.
///
/// # Errors
/// Connection failures and error replies.
pub fn set_all(
    addr: SocketAddr,
    keys: impl Iterator<Item = String>,
    value: &[u8],
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_nodelay(true)?;
    let mut keys = keys.peekable();
    let (mut buf, mut inbox) = (Vec::new(), Vec::new());
    while keys.peek().is_some() {
        buf.clear();
        let mut sent = 0;
        for key in keys.by_ref().take(256) {
            push_command(&mut buf, &[b"SET", key.as_bytes(), value]);
            sent += 1;
        }
        stream.write_all(&buf)?;
        let mut errors = 0;
        read_replies(&mut stream, &mut inbox, sent, &mut |error| errors += usize::from(error))?;
        if errors > 0 {
            return Err(std::io::Error::other(format!("{errors} error replies while loading")));
        }
    }
    Ok(())
}

/// Reads `count` replies, calling `each(is_error)` as each completes.
fn read_replies(
    stream: &mut TcpStream,
    inbox: &mut Vec<u8>,
    count: usize,
    each: &mut dyn FnMut(bool),
) -> std::io::Result<()> {
    let mut done = 0;
    let mut chunk = [0_u8; 64 * 1024];
    while done < count {
        let mut at = 0;
        while done < count {
            match reply_len(&inbox[at..]) {
                Some(Ok((len, error))) => {
                    at += len;
                    done += 1;
                    each(error);
                }
                Some(Err(message)) => {
                    return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, message));
                }
                None => break,
            }
            if at >= inbox.len() {
                break;
            }
        }
        inbox.drain(..at);
        if done < count {
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            inbox.extend_from_slice(&chunk[..n]);
        }
    }
    Ok(())
}

/// Runs the load.
///
/// # Errors
/// No connection could be opened.
pub fn run(config: &LoadConfig) -> std::io::Result<LoadResult> {
    let zipf = Arc::new(Zipf::new(config.keys, config.zipf));
    let names: Arc<Vec<String>> = Arc::new((0..config.keys).map(key_name).collect());
    let threads = config.threads.clamp(1, config.connections.max(1));
    let mut handles = Vec::new();
    let deadline = Instant::now() + config.duration;
    for t in 0..threads {
        let conns = config.connections / threads + usize::from(t < config.connections % threads);
        let mut streams = Vec::new();
        for _ in 0..conns {
            let stream = TcpStream::connect(config.addr)?;
            stream.set_nodelay(true)?;
            streams.push(stream);
        }
        let (zipf, names, config) = (Arc::clone(&zipf), Arc::clone(&names), config.clone());
        handles.push(std::thread::spawn(move || {
            let mut rng = SimRng::new(0xC0FFEE + t as u64);
            let value = vec![b'v'; config.value_bytes];
            let mut latency = histogram();
            let mut errors = 0_u64;
            let mut ops = 0_u64;
            let mut buf = Vec::new();
            let mut inboxes: Vec<Vec<u8>> = streams.iter().map(|_| Vec::new()).collect();
            let mut alive: Vec<bool> = streams.iter().map(|_| true).collect();
            let started = Instant::now();
            while Instant::now() < deadline && alive.iter().any(|a| *a) {
                let mut sent_at = Vec::with_capacity(streams.len());
                for (stream, live) in streams.iter_mut().zip(alive.iter_mut()) {
                    buf.clear();
                    for _ in 0..config.pipeline {
                        let key = names[zipf.sample(rng.next_f64())].as_bytes();
                        if rng.next_f64() < config.read_share {
                            push_command(&mut buf, &[b"GET", key]);
                        } else {
                            push_command(&mut buf, &[b"SET", key, &value]);
                        }
                    }
                    sent_at.push(Instant::now());
                    if *live && stream.write_all(&buf).is_err() {
                        *live = false;
                        errors += 1;
                    }
                }
                for (i, stream) in streams.iter_mut().enumerate() {
                    if !alive[i] {
                        continue;
                    }
                    let start = sent_at[i];
                    let mut record = |error: bool| {
                        errors += u64::from(error);
                        let us = start.elapsed().as_micros().max(1) as u64;
                        let _ = latency.record(us.min(60_000_000));
                    };
                    match read_replies(stream, &mut inboxes[i], config.pipeline, &mut record) {
                        Ok(()) => ops += config.pipeline as u64,
                        Err(_) => {
                            alive[i] = false;
                            errors += 1;
                        }
                    }
                }
            }
            (ops, started.elapsed(), latency, errors)
        }));
    }
    let mut latency = histogram();
    let mut ops_per_s = 0.0;
    let mut errors = 0;
    for handle in handles {
        let (ops, elapsed, h, e) = handle.join().expect("load thread");
        ops_per_s += ops as f64 / elapsed.as_secs_f64().max(1e-9);
        latency.add(&h).expect("same histogram bounds");
        errors += e;
    }
    Ok(LoadResult { ops_per_s, errors, latency_us: latency })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_measured_exactly() {
        assert_eq!(reply_len(b"+OK\r\n"), Some(Ok((5, false))));
        assert_eq!(reply_len(b"-ERR x\r\n+OK"), Some(Ok((8, true))));
        assert_eq!(reply_len(b"$3\r\nabc\r\n"), Some(Ok((9, false))));
        assert_eq!(reply_len(b"$3\r\nab"), None);
        assert_eq!(reply_len(b"$-1\r\n"), Some(Ok((5, false))));
        assert_eq!(reply_len(b"$3"), None);
        assert!(matches!(reply_len(b"?\r\n"), Some(Err(_))));
        let mut out = Vec::new();
        push_command(&mut out, &[b"SET", b"k", b"v"]);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n");
    }
}
