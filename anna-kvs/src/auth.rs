//! Who may talk to a node: the "a public address needs a password" policy both client front
//! ends apply, and the comparisons they check passwords with.

use std::net::IpAddr;

/// Whether `bind` only accepts connections from this machine (`localhost` or a loopback IP).
///
/// ```
/// use anna_kvs::auth::is_loopback;
/// assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("localhost"));
/// assert!(!is_loopback("0.0.0.0") && !is_loopback("192.168.1.5"));
/// ```
pub fn is_loopback(bind: &str) -> bool {
    bind == "localhost" || bind.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The one policy of every listening port: a non-loopback address needs a non-empty password.
///
/// # Errors
/// A message naming the address and what to do, when the port would be open to the network
/// without a password.
///
/// ```
/// use anna_kvs::auth::check_public_bind;
/// assert!(check_public_bind("redis", "127.0.0.1", None).is_ok());
/// assert!(check_public_bind("redis", "0.0.0.0", Some("s3cret")).is_ok());
/// assert!(check_public_bind("redis", "0.0.0.0", Some("")).is_err());
/// ```
pub fn check_public_bind(port: &str, bind: &str, password: Option<&str>) -> Result<(), String> {
    if is_loopback(bind) || password.is_some_and(|p| !p.is_empty()) {
        return Ok(());
    }
    Err(format!(
        "refusing to serve the {port} port on {bind} without a password: set --requirepass, or bind 127.0.0.1"
    ))
}

/// The same policy for the gossip port, whose secret is the cluster's: a non-loopback address
/// needs one, or anyone who reaches the port could write into the store.
///
/// # Errors
/// A message naming the address and what to do.
pub fn check_public_gossip(bind: &str, secret: Option<&Secret>) -> Result<(), String> {
    if is_loopback(bind) || secret.is_some_and(|s| !s.is_empty()) {
        return Ok(());
    }
    Err(format!(
        "refusing to gossip on {bind} without a cluster secret: set --cluster-secret (or --cluster-secret-file, or ANNA_CLUSTER_SECRET) on every node, or bind 127.0.0.1"
    ))
}

/// Whether `host` is an address no peer can dial (`0.0.0.0`, `::`): fine to bind, wrong to
/// announce.
///
/// ```
/// use anna_kvs::auth::is_unspecified;
/// assert!(is_unspecified("0.0.0.0") && is_unspecified("::") && !is_unspecified("10.0.0.2"));
/// ```
pub fn is_unspecified(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified())
}

/// A cluster secret: kept out of `Debug` output (so out of logs), read from the command line,
/// a file or the environment.
///
/// ```
/// use anna_kvs::auth::Secret;
/// let secret: Secret = "hunter2".parse().unwrap();
/// assert_eq!(format!("{secret:?}"), "Secret(..)");
/// assert_eq!(secret.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// Reads a secret from a file (its first line, without the line ending), as a secret
    /// mounted by an orchestrator is.
    ///
    /// # Errors
    /// The file cannot be read, or holds an empty first line.
    pub fn from_file(path: &std::path::Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the secret in {}: {e}", path.display()))?;
        let line = text.lines().next().unwrap_or_default();
        if line.is_empty() {
            return Err(format!("{} holds an empty secret", path.display()));
        }
        Ok(Self(line.to_owned()))
    }

    /// The secret itself, for deriving keys from it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty (which counts as no secret).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self(text.to_owned()))
    }
}

/// Compares two secrets in time that depends only on their lengths, not on where they differ.
///
/// ```
/// use anna_kvs::auth::constant_time_eq;
/// assert!(constant_time_eq(b"s3cret", b"s3cret"));
/// assert!(!constant_time_eq(b"s3cret", b"s3creT") && !constant_time_eq(b"s3", b"s3cret"));
/// ```
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}
