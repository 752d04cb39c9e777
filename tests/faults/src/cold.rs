//! Cold keys: written once and never again, so gossip (which carries only keys that change)
//! cannot bring them to a replica that missed them; only anti-entropy can. The repair
//! scenarios write a batch of them, make one node miss them, and check that every node serves
//! every one of them again.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use crate::workload::connect;

/// A batch of cold keys and the values written to them.
#[derive(Clone, Debug, Default)]
pub struct ColdKeys {
    /// `(key, value)`, each written once and acknowledged.
    pub written: Vec<(String, String)>,
}

impl ColdKeys {
    /// Writes `count` keys named `{prefix}:{i}` through the node at `addr` (pipelined; each
    /// acknowledged) and remembers them.
    ///
    /// # Errors
    /// The node could not be reached or refused a write.
    pub fn write(&mut self, addr: Ipv4Addr, prefix: &str, count: usize) -> Result<(), String> {
        let mut con = connect(addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        for chunk in (0..count).collect::<Vec<_>>().chunks(500) {
            let mut pipe = redis::pipe();
            let batch: Vec<(String, String)> =
                chunk.iter().map(|i| (format!("{prefix}:{i}"), format!("cold-{i}"))).collect();
            for (key, value) in &batch {
                pipe.cmd("SET").arg(key).arg(value);
            }
            let replies: Vec<String> = pipe.query(&mut con).map_err(|e| e.to_string())?;
            if replies.iter().any(|r| r != "OK") {
                return Err(format!("a cold SET was refused: {replies:?}"));
            }
            self.written.extend(batch);
        }
        Ok(())
    }

    /// How many of the keys the node at `addr` does not serve with their value (read right
    /// now: `MGET` in batches).
    ///
    /// # Errors
    /// The node could not be read.
    pub fn missing_at(&self, addr: Ipv4Addr) -> Result<usize, String> {
        let mut con = connect(addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
        let mut missing = 0;
        for chunk in self.written.chunks(500) {
            let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let values: Vec<Option<String>> =
                redis::cmd("MGET").arg(&keys).query(&mut con).map_err(|e| e.to_string())?;
            missing += chunk
                .iter()
                .zip(&values)
                .filter(|((_, want), got)| got.as_deref() != Some(want.as_str()))
                .count();
        }
        Ok(missing)
    }

    /// Waits until every node of `addrs` serves every key (or `limit` passes): how long it
    /// took, or what each node still misses and how many keys that is in all (a node that
    /// cannot be read counts as missing every key).
    pub fn wait_everywhere(
        &self,
        addrs: &[Ipv4Addr],
        limit: Duration,
    ) -> Result<Duration, (Vec<String>, usize)> {
        let start = Instant::now();
        loop {
            let mut total = 0;
            let mut missing = Vec::new();
            for (i, &addr) in addrs.iter().enumerate() {
                match self.missing_at(addr) {
                    Ok(0) => {}
                    Ok(n) => {
                        total += n;
                        missing.push(format!(
                            "node {i} misses {n} of {} cold keys (written once, never again)",
                            self.written.len()
                        ));
                    }
                    Err(error) => {
                        total += self.written.len();
                        missing.push(format!("node {i}'s cold keys could not be read: {error}"));
                    }
                }
            }
            if missing.is_empty() {
                return Ok(start.elapsed());
            }
            if start.elapsed() >= limit {
                return Err((missing, total));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
