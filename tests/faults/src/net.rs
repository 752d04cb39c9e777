//! Hosts: one Linux network namespace per node, each with its own address on a bridge, and the
//! packet filters the nemesis drives (iptables in each namespace; only the project's own
//! namespaces are ever touched).
//!
//! Names carry the harness's process id (`afb-<pid>-<i>`, bridge `afb<pid>`), so concurrent
//! runs never collide, and a run killed before its cleanup is recognised by the next one (its
//! process is gone) and removed with every process still inside it.

use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Runs a command; its trimmed stdout, or an error naming it and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let output = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{program} {}: {e}", args.join(" ")))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    } else {
        Err(format!(
            "{program} {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// The namespaces and bridge of one run, removed on drop.
#[derive(Debug)]
pub struct Net {
    bridge: String,
    namespaces: Vec<String>,
    addrs: Vec<Ipv4Addr>,
    gateway: Ipv4Addr,
}

const PREFIX: &str = "afb";

impl Net {
    /// Creates `hosts` namespaces joined by a bridge that also holds an address for the
    /// harness itself, after removing whatever a dead earlier run left behind.
    ///
    /// # Errors
    /// Not root, or `ip`/`iptables` missing or failing.
    pub fn create(hosts: usize) -> Result<Self, String> {
        remove_stale();
        let pid = std::process::id();
        let subnet = 10 + pid % 240;
        let mut net = Self {
            bridge: format!("{PREFIX}{pid}"),
            namespaces: Vec::new(),
            addrs: Vec::new(),
            gateway: Ipv4Addr::new(10, 78, subnet as u8, 254),
        };
        let _ = run("ip", &["link", "del", &net.bridge]);
        run("ip", &["link", "add", &net.bridge, "type", "bridge"])?;
        run("ip", &["addr", "add", &format!("{}/24", net.gateway), "dev", &net.bridge])?;
        run("ip", &["link", "set", &net.bridge, "up"])?;
        for i in 0..hosts {
            let ns = format!("{PREFIX}-{pid}-{i}");
            let _ = run("ip", &["netns", "del", &ns]);
            run("ip", &["netns", "add", &ns])?;
            net.namespaces.push(ns.clone());
            let addr = Ipv4Addr::new(10, 78, subnet as u8, i as u8 + 1);
            net.addrs.push(addr);
            let (outside, inside) = (format!("{PREFIX}{pid}h{i}"), format!("{PREFIX}{pid}n{i}"));
            // The kernel may still be tearing down the previous run's pair of the same name.
            let _ = run("ip", &["link", "del", &outside]);
            run("ip", &["link", "add", &outside, "type", "veth", "peer", "name", &inside])?;
            run("ip", &["link", "set", &outside, "master", &net.bridge])?;
            run("ip", &["link", "set", &outside, "up"])?;
            run("ip", &["link", "set", &inside, "netns", &ns])?;
            run("ip", &["-n", &ns, "addr", "add", &format!("{addr}/24"), "dev", &inside])?;
            run("ip", &["-n", &ns, "link", "set", &inside, "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    /// Host `i`'s namespace.
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    /// Host `i`'s address.
    pub fn addr(&self, i: usize) -> Ipv4Addr {
        self.addrs[i]
    }

    /// How many hosts.
    pub fn hosts(&self) -> usize {
        self.namespaces.len()
    }

    fn iptables(&self, host: usize, args: &[&str]) -> Result<(), String> {
        let ns = self.namespace(host).to_owned();
        let full: Vec<&str> = ["netns", "exec", &ns, "iptables", "-w"]
            .into_iter()
            .chain(args.iter().copied())
            .collect();
        run("ip", &full).map(drop)
    }

    /// Drops everything `to` receives from `from` (one direction only). The harness's own
    /// address is never filtered: clients keep reaching every node.
    ///
    /// # Errors
    /// iptables failed.
    pub fn cut(&self, from: usize, to: usize) -> Result<(), String> {
        let source = self.addr(from).to_string();
        self.iptables(to, &["-A", "INPUT", "-s", &source, "-j", "DROP"])
    }

    /// Cuts every link between hosts in different groups, both ways.
    ///
    /// # Errors
    /// iptables failed.
    pub fn partition(&self, groups: &[Vec<usize>]) -> Result<(), String> {
        for (g, group) in groups.iter().enumerate() {
            for other in groups.iter().skip(g + 1) {
                for &a in group {
                    for &b in other {
                        self.cut(a, b)?;
                        self.cut(b, a)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Drops each packet between nodes with probability `p` (iptables' `statistic` match).
    ///
    /// # Errors
    /// iptables failed.
    pub fn lose(&self, p: f64) -> Result<(), String> {
        let probability = format!("{p:.3}");
        for to in 0..self.hosts() {
            for from in (0..self.hosts()).filter(|&f| f != to) {
                let source = self.addr(from).to_string();
                self.iptables(
                    to,
                    &[
                        "-A",
                        "INPUT",
                        "-s",
                        &source,
                        "-m",
                        "statistic",
                        "--mode",
                        "random",
                        "--probability",
                        &probability,
                        "-j",
                        "DROP",
                    ],
                )?;
            }
        }
        Ok(())
    }

    /// Removes every filter.
    ///
    /// # Errors
    /// iptables failed.
    pub fn heal(&self) -> Result<(), String> {
        for host in 0..self.hosts() {
            self.iptables(host, &["-F", "INPUT"])?;
        }
        Ok(())
    }

    /// A command that runs `program` inside host `i`.
    pub fn command(&self, i: usize, program: &str) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", self.namespace(i), program]);
        command
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            remove_namespace(ns);
        }
        // Each pair goes with its namespace, but not always at once: remove the outer ends
        // explicitly, so the next run can reuse the names.
        let pid = std::process::id();
        for i in 0..self.namespaces.len() {
            let _ = run("ip", &["link", "del", &format!("{PREFIX}{pid}h{i}")]);
        }
        let _ = run("ip", &["link", "del", &self.bridge]);
    }
}

/// Kills whatever still runs in `ns`, then removes it (its veth goes with it).
fn remove_namespace(ns: &str) {
    if let Ok(pids) = run("ip", &["netns", "pids", ns]) {
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-9", pid]);
        }
    }
    let _ = run("ip", &["netns", "del", ns]);
}

/// Removes the namespaces and bridges of runs whose harness process is gone.
fn remove_stale() {
    let dead = |pid: &str| {
        pid.parse::<u32>().is_ok_and(|p| !std::path::Path::new(&format!("/proc/{p}")).exists())
    };
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for line in list.lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            let Some(rest) = name.strip_prefix(&format!("{PREFIX}-")) else { continue };
            if rest.split('-').next().is_some_and(dead) {
                remove_namespace(name);
            }
        }
    }
    if let Ok(list) = run("ip", &["-o", "link", "show", "type", "bridge"]) {
        for line in list.lines() {
            let name = line.split(':').nth(1).unwrap_or_default().trim();
            if let Some(pid) = name.strip_prefix(PREFIX)
                && dead(pid)
            {
                let _ = run("ip", &["link", "del", name]);
            }
        }
    }
}
