//! The binary envelope for messages between nodes: versioned, typed and size-limited.
//!
//! ```text
//! "ANNA" | version: u8 | value-type: u32 (CRC32 of KvsValue::TYPE_NAME) | bincode 2 payload
//! ```
//!
//! Decoding never trusts a length it has not checked: the whole message is bounded by
//! [`MAX_MESSAGE_BYTES`] (also set as ZeroMQ's `ZMQ_MAXMSGSIZE`, so oversized frames are
//! dropped by libzmq before they are buffered), and bincode is configured with the same limit,
//! so a length prefix inside the payload cannot make it allocate more than the message holds.

use crate::message::PeerMessage;
use crate::value::KvsValue;

/// The envelope's first bytes.
pub const MAGIC: &[u8; 4] = b"ANNA";
/// The wire version this build speaks.
pub const VERSION: u8 = 2;
/// The largest message accepted or produced (16 MiB).
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;
const HEADER: usize = 4 + 1 + 4;

type Config = bincode::config::Configuration<
    bincode::config::LittleEndian,
    bincode::config::Varint,
    bincode::config::Limit<MAX_MESSAGE_BYTES>,
>;

fn config() -> Config {
    bincode::config::standard().with_limit::<MAX_MESSAGE_BYTES>()
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
}

/// The id of a value type on the wire.
pub fn type_id<V: KvsValue>() -> u32 {
    crc32fast::hash(V::TYPE_NAME.as_bytes())
}

/// Encodes a message between nodes into the envelope.
///
/// # Errors
/// [`WireError::TooLarge`] if the result would exceed [`MAX_MESSAGE_BYTES`].
pub fn encode<V: KvsValue>(message: &PeerMessage<V>) -> Result<Vec<u8>, WireError> {
    encode_envelope(MAGIC, type_id::<V>(), message)
}

/// Decodes a message between nodes.
///
/// # Errors
/// Every way the bytes can be wrong has its [`WireError`]; nothing panics.
pub fn decode<V: KvsValue>(bytes: &[u8]) -> Result<PeerMessage<V>, WireError> {
    let (got, payload) = open_envelope(MAGIC, bytes)?;
    check_type::<V>(got)?;
    decode_payload(payload)
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
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(magic);
    out.push(VERSION);
    out.extend_from_slice(&type_id.to_le_bytes());
    bincode::serde::encode_into_std_write(message, &mut out, config())
        .map_err(|e| WireError::Malformed(e.to_string()))?;
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

/// Decodes a payload that must be consumed exactly, with every length bounded by
/// [`MAX_MESSAGE_BYTES`].
///
/// # Errors
/// [`WireError::Malformed`].
pub fn decode_payload<M: serde::de::DeserializeOwned>(payload: &[u8]) -> Result<M, WireError> {
    let (message, used) = bincode::serde::decode_from_slice(payload, config())
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
    use crate::ring::ActorId;
    use crate::value::{Counter, Eventual};
    use bytes::Bytes;
    use lattice_core::{Lww, Stamp};

    fn sample() -> PeerMessage<Eventual> {
        PeerMessage::Gossip(Gossip {
            from: ActorId::new(1, 2),
            seq: 7,
            updates: vec![(
                Bytes::from_static(b"k"),
                Lww::new(Stamp::new(3, 4), Some(Bytes::from_static(b"v"))),
            )],
            overrides: vec![(Bytes::from_static(b"hot"), 3)],
        })
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&sample()).unwrap();
        assert_eq!(decode::<Eventual>(&bytes).unwrap(), sample());
    }

    #[test]
    fn every_kind_of_bad_input_is_an_error() {
        let good = encode(&sample()).unwrap();
        assert_eq!(decode::<Eventual>(&good[..3]), Err(WireError::Truncated(3)));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(decode::<Eventual>(&bad), Err(WireError::BadMagic));
        let mut bad = good.clone();
        bad[4] = 99;
        assert_eq!(decode::<Eventual>(&bad), Err(WireError::UnsupportedVersion(99)));
        assert!(matches!(decode::<Counter>(&good), Err(WireError::WrongValueType { .. })));
        for cut in HEADER..good.len() {
            assert!(
                matches!(decode::<Eventual>(&good[..cut]), Err(WireError::Malformed(_))),
                "cut at {cut}"
            );
        }
        let mut long = good.clone();
        long.push(0);
        assert!(matches!(decode::<Eventual>(&long), Err(WireError::Malformed(_))));
    }

    #[test]
    fn a_huge_length_prefix_does_not_allocate() {
        // Header, then variant 0 (Gossip), a small ActorId and seq, then a vector length of
        // 2^62 entries encoded as a bincode varint (0xFD = u64 follows).
        let mut bytes = Vec::new();
        bytes.extend_from_slice(MAGIC);
        bytes.push(VERSION);
        bytes.extend_from_slice(&type_id::<Eventual>().to_le_bytes());
        bytes.extend_from_slice(&[0, 1, 2, 7, 0xFD]);
        bytes.extend_from_slice(&(1_u64 << 62).to_le_bytes());
        assert!(matches!(decode::<Eventual>(&bytes), Err(WireError::Malformed(_))));
    }
}
