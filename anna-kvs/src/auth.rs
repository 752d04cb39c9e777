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
