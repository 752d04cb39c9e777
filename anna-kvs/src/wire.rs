//! The binary envelope for messages between nodes: versioned, typed, size-limited and
//! authenticated.
//!
//! ```text
//! "ANNA" | version: u8 | value-type: u32 (CRC32 of KvsValue::TYPE_NAME)
//!        | sender node: u16 | sender thread: u16 | sender incarnation: u64
//!        | receiver node: u16 | receiver thread: u16 | bincode 2 payload | tag: 32 bytes
//! ```
//!
//! The tag is BLAKE3 in keyed mode over everything before it, with a key derived from the
//! cluster secret ([`ClusterKey`]). It is checked before anything else is read past the
//! version, so a message from another cluster, a forgery or a corrupted message is refused
//! without decoding a byte of its payload. The sender in the (authenticated) header must be
//! the sender the payload names. A cluster without a secret (loopback only) uses the key of
//! the empty secret: the same format, authenticating nothing. Naming the receiver too means a
//! captured message cannot be replayed to another actor.
//!
//! Decoding never trusts a length it has not checked: the whole message is bounded by
//! [`MAX_MESSAGE_BYTES`] (also set as ZeroMQ's `ZMQ_MAXMSGSIZE`, so oversized frames are
//! dropped by libzmq before they are buffered), and bincode is configured with the same limit,
//! so a length prefix inside the payload cannot make it allocate more than the message holds.

use crate::message::PeerMessage;
use crate::ring::ActorId;
use crate::value::KvsValue;

/// The envelope's first bytes.
pub const MAGIC: &[u8; 4] = b"ANNA";
/// The wire version this build speaks (5: the Redis operations of INCRBYFLOAT, RENAME, COPY
/// and MSETNX travel in forwarded requests).
pub const VERSION: u8 = 5;
/// The largest message accepted or produced (16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
const HEADER: usize = 4 + 1 + 4;
/// The gossip header: the envelope's, then the sender, its incarnation and the receiver.
const GOSSIP_HEADER: usize = HEADER + 2 + 2 + 8 + 2 + 2;
/// Bytes of the authentication tag.
pub const TAG_BYTES: usize = 32;
/// What the cluster key is derived for (BLAKE3's key derivation context).
const KEY_CONTEXT: &str = "anna-kvs 2026-11-29 gossip envelope MAC";

/// The key that authenticates every message between a cluster's nodes, derived from the
/// cluster secret. Its `Debug` shows nothing of it.
#[derive(Clone)]
pub struct ClusterKey([u8; 32]);

impl ClusterKey {
    /// The key of a cluster whose secret is `secret`.
    pub fn derive(secret: &[u8]) -> Self {
        Self(blake3::derive_key(KEY_CONTEXT, secret))
    }

    /// The key of a cluster without a secret (allowed on loopback only): the same envelope,
    /// authenticating nothing.
    pub fn open() -> Self {
        Self::derive(b"")
    }

    /// The tag of `bytes` under this key (what [`encode`] appends; for tools and fuzzing).
    pub fn tag(&self, bytes: &[u8]) -> [u8; TAG_BYTES] {
        *blake3::keyed_hash(&self.0, bytes).as_bytes()
    }
}

impl std::fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKey(..)")
    }
}

/// Who sent a message between nodes and to whom, as its authenticated header says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    /// The sending actor.
    pub actor: ActorId,
    /// The sending node's incarnation: a number that grows with every start of the node, so
    /// a message replayed from an earlier life can be told apart and refused.
    pub incarnation: u64,
    /// The actor the message is for (a receiver refuses a message meant for another).
    pub to: ActorId,
}

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_MESSAGE_BYTES>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
}

/// Most memory decoding one message may claim: a message is at most [`MAX_MESSAGE_BYTES`],
/// but decoding claims the in-memory size of what it builds (an 8-byte integer sent as a
/// 1-byte varint claims 8, a container claims its elements up front), which for a set of
/// short members is several times its encoded size.
pub const MAX_DECODED_BYTES: usize = 4 * MAX_MESSAGE_BYTES;

fn decode_config() -> bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_DECODED_BYTES>,
> {
    bincode::config::standard().with_limit::<MAX_DECODED_BYTES>()
}

/// The encoded size of one gossip entry (a key and a state) inside a message, counted without
/// encoding it anywhere: the actor packs its batches below the message limit with it.
pub fn entry_len<V: serde::Serialize>(key: &crate::ring::Key, value: &V) -> usize {
    let mut size = bincode::enc::write::SizeWriter::default();
    match bincode::serde::encode_into_writer((key, value), &mut size, bincode::config::standard()) {
        Ok(()) => size.bytes_written,
        // Unencodable: as good as too big, so it travels alone and its failure is reported.
        Err(_) => usize::MAX,
    }
}

/// Why bytes were not a valid message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// Shorter than the envelope header.
    #[error("message of {0} bytes is shorter than the {HEADER}-byte header")]
    Truncated(usize),
    /// Not an Anna message.
    #[error("bad magic bytes (not an Anna message)")]
    BadMagic,
    /// A version this build does not speak.
    #[error("unsupported wire version {0} (this node speaks {VERSION})")]
    UnsupportedVersion(u8),
    /// Sent by a node configured with another value lattice.
    #[error(
        "message carries value type {got:#010x}, this node stores {expected} ({expected_id:#010x})"
    )]
    WrongValueType {
        /// This node's type name.
        expected: &'static str,
        /// Its id.
        expected_id: u32,
        /// The id in the message.
        got: u32,
    },
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_BYTES}-byte limit")]
    TooLarge(usize),
    /// The payload did not decode, or had bytes left over.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The tag does not match: another cluster's secret, a forgery, or a corrupted message.
    #[error(
        "not authenticated by this cluster's secret (another cluster, a forgery, or corruption)"
    )]
    BadTag,
}

/// The id of a value type on the wire.
pub fn type_id<V: KvsValue>() -> u32 {
    crc32fast::hash(V::TYPE_NAME.as_bytes())
}

/// Encodes a message between nodes from `origin` into the envelope, authenticated with `key`.
///
/// # Errors
/// [`WireError::TooLarge`] if the result would exceed [`MAX_MESSAGE_BYTES`].
pub fn encode<V: KvsValue>(
    message: &PeerMessage<V>,
    origin: Origin,
    key: &ClusterKey,
) -> Result<Vec<u8>, WireError> {
    let mut out = envelope_header(MAGIC, type_id::<V>());
    out.extend_from_slice(&origin.actor.node.to_le_bytes());
    out.extend_from_slice(&origin.actor.thread.to_le_bytes());
    out.extend_from_slice(&origin.incarnation.to_le_bytes());
    out.extend_from_slice(&origin.to.node.to_le_bytes());
    out.extend_from_slice(&origin.to.thread.to_le_bytes());
    append_payload(&mut out, message)?;
    let tag = key.tag(&out);
    out.extend_from_slice(&tag);
    check_size(out)
}

/// Decodes a message between nodes: checks size, magic and version, then the tag with `key`
/// (before reading anything else), then the value type, then the payload, whose sender must
/// be the header's.
///
/// # Errors
/// Every way the bytes can be wrong has its [`WireError`]; nothing panics.
pub fn decode<V: KvsValue>(
    bytes: &[u8],
    key: &ClusterKey,
) -> Result<(Origin, PeerMessage<V>), WireError> {
    let (type_id, _) = open_envelope(MAGIC, bytes)?;
    if bytes.len() < GOSSIP_HEADER + TAG_BYTES {
        return Err(WireError::Truncated(bytes.len()));
    }
    let (signed, tag) = bytes.split_at(bytes.len() - TAG_BYTES);
    // `Hash`'s equality is constant-time.
    let expected = blake3::Hash::from_bytes(key.tag(signed));
    if expected != blake3::Hash::from_bytes(tag.try_into().expect("32 bytes")) {
        return Err(WireError::BadTag);
    }
    check_type::<V>(type_id)?;
    let field = |at: usize, n: usize| &signed[at..at + n];
    let node = u16::from_le_bytes(field(HEADER, 2).try_into().expect("2 bytes"));
    let thread = u16::from_le_bytes(field(HEADER + 2, 2).try_into().expect("2 bytes"));
    let incarnation = u64::from_le_bytes(field(HEADER + 4, 8).try_into().expect("8 bytes"));
    let to_node = u16::from_le_bytes(field(HEADER + 12, 2).try_into().expect("2 bytes"));
    let to_thread = u16::from_le_bytes(field(HEADER + 14, 2).try_into().expect("2 bytes"));
    let origin = Origin {
        actor: ActorId::new(node, thread),
        incarnation,
        to: ActorId::new(to_node, to_thread),
    };
    let message: PeerMessage<V> = decode_payload(&signed[GOSSIP_HEADER..])?;
    let named = match &message {
        PeerMessage::Gossip(g) => Some(g.from),
        PeerMessage::Ack { from, .. } => Some(*from),
        PeerMessage::Forward { origin, .. } => Some(*origin),
        PeerMessage::ForwardReply { .. } => None,
        PeerMessage::Repair(repair) => Some(repair.from()),
        PeerMessage::Flush { from, .. } => Some(*from),
    };
    if named.is_some_and(|named| named != origin.actor) {
        return Err(WireError::Malformed(format!(
            "payload names sender {} but the header {}",
            named.map(|a| a.to_string()).unwrap_or_default(),
            origin.actor
        )));
    }
    Ok((origin, message))
}

/// Encodes any serde message into an envelope with the given magic bytes and type id (the
/// native client protocol uses its own magic, so neither port mistakes the other's messages).
///
/// # Errors
/// [`WireError::TooLarge`] if the result would exceed [`MAX_MESSAGE_BYTES`].
pub fn encode_envelope<M: serde::Serialize + ?Sized>(
    magic: &[u8; 4],
    type_id: u32,
    message: &M,
) -> Result<Vec<u8>, WireError> {
    let mut out = envelope_header(magic, type_id);
    append_payload(&mut out, message)?;
    check_size(out)
}

/// The envelope's first bytes: magic, version, value type.
fn envelope_header(magic: &[u8; 4], type_id: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(magic);
    out.push(VERSION);
    out.extend_from_slice(&type_id.to_le_bytes());
    out
}

/// Appends `message`'s bincode encoding.
fn append_payload<M: serde::Serialize + ?Sized>(
    out: &mut Vec<u8>,
    message: &M,
) -> Result<(), WireError> {
    bincode::serde::encode_into_std_write(message, out, config())
        .map(drop)
        .map_err(|e| WireError::Malformed(e.to_string()))
}

/// Refuses a message over [`MAX_MESSAGE_BYTES`].
fn check_size(out: Vec<u8>) -> Result<Vec<u8>, WireError> {
    if out.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(out.len()));
    }
    Ok(out)
}

/// Checks an envelope's size, magic and version; returns its type id and payload.
///
/// # Errors
/// [`WireError::TooLarge`], [`WireError::Truncated`], [`WireError::BadMagic`],
/// [`WireError::UnsupportedVersion`].
pub fn open_envelope<'a>(magic: &[u8; 4], bytes: &'a [u8]) -> Result<(u32, &'a [u8]), WireError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(WireError::TooLarge(bytes.len()));
    }
    if bytes.len() < HEADER {
        return Err(WireError::Truncated(bytes.len()));
    }
    if &bytes[..4] != magic {
        return Err(WireError::BadMagic);
    }
    if bytes[4] != VERSION {
        return Err(WireError::UnsupportedVersion(bytes[4]));
    }
    Ok((u32::from_le_bytes([bytes[5], bytes[6], bytes[7], bytes[8]]), &bytes[HEADER..]))
}

/// Refuses a type id that is not `V`'s.
///
/// # Errors
/// [`WireError::WrongValueType`].
pub fn check_type<V: KvsValue>(got: u32) -> Result<(), WireError> {
    if got == type_id::<V>() {
        Ok(())
    } else {
        Err(WireError::WrongValueType { expected: V::TYPE_NAME, expected_id: type_id::<V>(), got })
    }
}

/// Decodes a payload that must be consumed exactly, with what it claims bounded by
/// [`MAX_DECODED_BYTES`] (the payload itself is at most [`MAX_MESSAGE_BYTES`]).
///
/// # Errors
/// [`WireError::Malformed`].
pub fn decode_payload<M: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<M, WireError> {
    let (message, used) = bincode::serde::decode_from_slice(payload, decode_config())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
    if used != payload.len() {
        return Err(WireError::Malformed(format!("{} trailing bytes", payload.len() - used)));
    }
    Ok(message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::Gossip;
    use crate::value::{Counter, Eventual};
    use bytes::Bytes;
    use lattice_core::{Lww, Stamp};

    const FROM: Origin =
        Origin { actor: ActorId::new(1, 2), incarnation: 99, to: ActorId::new(0, 1) };

    fn sample() -> PeerMessage<Eventual> {
        PeerMessage::Gossip(Gossip {
            from: ActorId::new(1, 2),
            seq: 7,
            low_water: 5,
            updates: vec![(
                Bytes::from_static(b"k"),
                Lww::new(Stamp::new(3, 4), Some(Bytes::from_static(b"v"))),
            )],
            overrides: vec![(Bytes::from_static(b"hot"), 3)],
        })
    }

    fn key() -> ClusterKey {
        ClusterKey::derive(b"s3cret")
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample(), FROM, &key()).unwrap();
        assert_eq!(decode::<Eventual>(&bytes, &key()).unwrap(), (FROM, sample()));
    }

    #[test]
    fn another_secret_a_forgery_or_any_flipped_bit_is_refused() {
        let good = encode(&sample(), FROM, &key()).unwrap();
        assert_eq!(
            decode::<Eventual>(&good, &ClusterKey::derive(b"other")),
            Err(WireError::BadTag)
        );
        assert_eq!(decode::<Eventual>(&good, &ClusterKey::open()), Err(WireError::BadTag));
        let forged = encode(&sample(), FROM, &ClusterKey::open()).unwrap();
        assert_eq!(decode::<Eventual>(&forged, &key()), Err(WireError::BadTag));
        for at in 5..good.len() {
            let mut flipped = good.clone();
            flipped[at] ^= 0x10;
            assert_eq!(decode::<Eventual>(&flipped, &key()), Err(WireError::BadTag), "byte {at}");
        }
    }

    #[test]
    fn the_header_must_name_the_payloads_sender() {
        let impostor = Origin { actor: ActorId::new(0, 0), ..FROM };
        let bytes = encode(&sample(), impostor, &key()).unwrap();
        assert!(matches!(decode::<Eventual>(&bytes, &key()), Err(WireError::Malformed(_))));
    }

    #[test]
    fn every_kind_of_bad_input_is_an_error() {
        let good = encode(&sample(), FROM, &key()).unwrap();
        assert_eq!(decode::<Eventual>(&good[..3], &key()), Err(WireError::Truncated(3)));
        assert_eq!(decode::<Eventual>(&good[..40], &key()), Err(WireError::Truncated(40)));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(decode::<Eventual>(&bad, &key()), Err(WireError::BadMagic));
        let mut bad = good.clone();
        bad[4] = 99;
        assert_eq!(decode::<Eventual>(&bad, &key()), Err(WireError::UnsupportedVersion(99)));
        assert!(matches!(decode::<Counter>(&good, &key()), Err(WireError::WrongValueType { .. })));
        // A cut message fails its tag; a well-tagged but truncated or padded payload fails to
        // decode.
        for cut in GOSSIP_HEADER + TAG_BYTES..good.len() {
            assert!(decode::<Eventual>(&good[..cut], &key()).is_err(), "cut at {cut}");
        }
        let body = &good[..good.len() - TAG_BYTES];
        for cut in GOSSIP_HEADER..body.len() {
            let mut resealed = body[..cut].to_vec();
            resealed.extend_from_slice(&key().tag(&resealed));
            assert!(
                matches!(decode::<Eventual>(&resealed, &key()), Err(WireError::Malformed(_))),
                "payload cut at {cut}"
            );
        }
        let mut long = body.to_vec();
        long.push(0);
        long.extend_from_slice(&key().tag(&long));
        assert!(matches!(decode::<Eventual>(&long, &key()), Err(WireError::Malformed(_))));
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate() {
        // Header, then variant 0 (Gossip), a small ActorId, seq and low-water mark, then a
        // vector length of 2^62 entries encoded as a bincode varint (0xFD = u64 follows),
        // correctly tagged.
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        bytes.extend_from_slice(&type_id::<Eventual>().to_le_bytes());
        bytes.extend_from_slice(&[1, 0, 2, 0]);
        bytes.extend_from_slice(&99_u64.to_le_bytes());
        bytes.extend_from_slice(&[0, 0, 1, 0]);
        bytes.extend_from_slice(&[0, 1, 2, 7, 5, 0xFD]);
        bytes.extend_from_slice(&(1_u64 << 62).to_le_bytes());
        bytes.extend_from_slice(&key().tag(&bytes));
        assert!(matches!(decode::<Eventual>(&bytes, &key()), Err(WireError::Malformed(_))));
    }
}
