//! [`RoomCodec`]: how the values of a room message become bytes for the
//! other nodes, and bytes from them become values again.

use std::sync::Arc;

use bytes::Bytes;

/// Turns the values of room messages into bytes for the other nodes, and
/// their bytes back into values.
///
/// A message to a room crosses Redis once, as one envelope (see the
/// [module docs](super#the-envelope)), in which each value is what
/// [`encode`](RoomCodec::encode) appended. Every node that receives the
/// envelope [`decode`](RoomCodec::decode)s each value and sends the values
/// to its own members of the room. Bytes that are not a value reject the
/// whole message, which is counted in
/// [`BackplaneStatsSnapshot::rejected`](super::BackplaneStatsSnapshot::rejected):
/// they come from the network, so a bad one must never panic.
///
/// Every node of one application must use the same codec.
///
/// # Examples
///
/// A codec for a value type of the application's own: a score, as eight
/// bytes.
///
/// ```
/// use bytes::Bytes;
/// use stream_multiplexer::backplane::RoomCodec;
///
/// #[derive(Debug, Clone, PartialEq)]
/// struct Score(u64);
///
/// struct ScoreCodec;
///
/// impl RoomCodec<Score> for ScoreCodec {
///     fn encode(&self, value: &Score, out: &mut Vec<u8>) {
///         out.extend_from_slice(&value.0.to_be_bytes());
///     }
///
///     fn decode(&self, bytes: Bytes) -> Option<Score> {
///         let bytes: [u8; 8] = bytes[..].try_into().ok()?;
///         Some(Score(u64::from_be_bytes(bytes)))
///     }
/// }
///
/// let mut out = Vec::new();
/// ScoreCodec.encode(&Score(7), &mut out);
/// assert_eq!(ScoreCodec.decode(Bytes::from(out)), Some(Score(7)));
/// assert_eq!(ScoreCodec.decode(Bytes::from_static(b"short")), None);
/// ```
pub trait RoomCodec<V> {
    /// Appends the bytes of `value` to `out` (which may already hold
    /// others: append, do not clear).
    fn encode(&self, value: &V, out: &mut Vec<u8>);

    /// The value that `bytes` encode, or `None` if they encode none.
    fn decode(&self, bytes: Bytes) -> Option<V>;
}

/// The codec of values that are bytes or text already: each is sent as it
/// is. Text is checked to be UTF-8 when it comes back.
///
/// Decoding [`Bytes`] copies nothing: each value is a slice of the message
/// received from Redis.
///
/// # Examples
///
/// ```
/// use std::sync::Arc;
/// use bytes::Bytes;
/// use stream_multiplexer::backplane::{RawCodec, RoomCodec};
///
/// let mut out = Vec::new();
/// RawCodec.encode(&Bytes::from_static(b"hello"), &mut out);
/// assert_eq!(out, b"hello");
///
/// let text: Option<Arc<str>> = RawCodec.decode(Bytes::from_static(b"hi"));
/// assert_eq!(text.as_deref(), Some("hi"));
/// let not_text: Option<String> = RawCodec.decode(Bytes::from_static(b"\xff"));
/// assert_eq!(not_text, None);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawCodec;

impl RoomCodec<Bytes> for RawCodec {
    fn encode(&self, value: &Bytes, out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }

    fn decode(&self, bytes: Bytes) -> Option<Bytes> {
        Some(bytes)
    }
}

impl RoomCodec<Vec<u8>> for RawCodec {
    fn encode(&self, value: &Vec<u8>, out: &mut Vec<u8>) {
        out.extend_from_slice(value);
    }

    fn decode(&self, bytes: Bytes) -> Option<Vec<u8>> {
        Some(bytes.to_vec())
    }
}

impl RoomCodec<String> for RawCodec {
    fn encode(&self, value: &String, out: &mut Vec<u8>) {
        out.extend_from_slice(value.as_bytes());
    }

    fn decode(&self, bytes: Bytes) -> Option<String> {
        String::from_utf8(bytes.to_vec()).ok()
    }
}

impl RoomCodec<Arc<str>> for RawCodec {
    fn encode(&self, value: &Arc<str>, out: &mut Vec<u8>) {
        out.extend_from_slice(value.as_bytes());
    }

    fn decode(&self, bytes: Bytes) -> Option<Arc<str>> {
        std::str::from_utf8(&bytes).ok().map(Arc::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<V>(value: V) -> Option<V>
    where
        RawCodec: RoomCodec<V>,
    {
        let mut out = b"before".to_vec();
        RawCodec.encode(&value, &mut out);
        RawCodec.decode(Bytes::from(out).slice(6..))
    }

    #[test]
    fn raw_values_come_back_as_they_went() {
        assert_eq!(
            round_trip(Bytes::from_static(b"\0\x01")).as_deref(),
            Some(&b"\0\x01"[..])
        );
        assert_eq!(round_trip(vec![1u8, 2]), Some(vec![1, 2]));
        assert_eq!(round_trip(String::from("héllo")).as_deref(), Some("héllo"));
        assert_eq!(round_trip(Arc::<str>::from("")).as_deref(), Some(""));
    }

    #[test]
    fn text_that_is_not_utf8_is_no_value() {
        let cut = Bytes::from_static("é".as_bytes()).slice(..1);
        assert_eq!(RoomCodec::<String>::decode(&RawCodec, cut.clone()), None);
        assert_eq!(RoomCodec::<Arc<str>>::decode(&RawCodec, cut), None);
    }
}
