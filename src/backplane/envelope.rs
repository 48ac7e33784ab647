//! The envelope: one room message as it crosses Redis, and the checks it
//! passes on its way in.
//!
//! The layout is in the [module docs](super#the-envelope). Decoding checks
//! every length against the bytes that are left before it takes them, and
//! every count against what those bytes could hold before it reserves
//! anything: a payload from Redis is untrusted input (another application
//! on the same server, a node of another version, a hand-typed `PUBLISH`).

use bytes::Bytes;

use super::codec::RoomCodec;
use crate::{Delivery, RoomName, StreamId};

/// The first bytes of every envelope: what tells one from other traffic on
/// the channel.
pub(crate) const MAGIC: [u8; 3] = *b"smx";

/// The version of the layout. A node rejects (and counts) envelopes of any
/// other version, so that nodes of two versions side by side never
/// misread each other.
pub(crate) const VERSION: u8 = 1;

/// A room message from the application, on its way to the other nodes.
#[derive(Debug, Clone)]
pub(crate) struct Publication<V> {
    pub(crate) room: RoomName,
    pub(crate) except: Option<StreamId>,
    pub(crate) delivery: Delivery,
    pub(crate) values: Vec<V>,
}

/// Why a message from Redis was not delivered to this node's members.
///
/// Reported by [`BackplaneEvent::Rejected`](super::BackplaneEvent::Rejected)
/// and counted in
/// [`BackplaneStatsSnapshot::rejected`](super::BackplaneStatsSnapshot::rejected).
///
/// # Examples
///
/// ```
/// use stream_multiplexer::backplane::Rejection;
///
/// assert_eq!(Rejection::Version(2).to_string(), "an envelope of version 2");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The payload does not start like an envelope: not from a backplane.
    #[error("not an envelope")]
    NotAnEnvelope,
    /// An envelope of another version, from a node of another release.
    #[error("an envelope of version {0}")]
    Version(u8),
    /// An envelope of this version whose fields do not add up: cut short,
    /// a length past its end, an unknown delivery class, bytes left over.
    #[error("a malformed envelope")]
    Malformed,
    /// The envelope names another room than the channel it came on.
    #[error("an envelope for another room than its channel's")]
    WrongRoom,
    /// A value the [`RoomCodec`] could not decode.
    #[error("a value the codec could not decode")]
    Value,
}

/// A publication too large for the envelope's length fields or for the
/// configured maximum: it is not published.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TooLarge;

/// An envelope as read from Redis: its values still bytes, slices of the
/// payload.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Envelope<'a> {
    pub(crate) origin: u64,
    pub(crate) room: &'a str,
    pub(crate) except: Option<StreamId>,
    pub(crate) delivery: Delivery,
    pub(crate) values: Vec<Bytes>,
}

/// Writes the envelope of `publication` from node `origin` into `out`
/// (cleared first), its values encoded by `codec`. Fails, leaving `out` in
/// no particular state, if a field overflows its length or the whole
/// exceeds `max` bytes.
pub(crate) fn encode<V, K: RoomCodec<V>>(
    origin: u64,
    publication: &Publication<V>,
    codec: &K,
    max: usize,
    out: &mut Vec<u8>,
) -> Result<(), TooLarge> {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.extend_from_slice(&origin.to_be_bytes());
    let room = publication.room.as_bytes();
    let room_length = u16::try_from(room.len()).map_err(|_| TooLarge)?;
    out.extend_from_slice(&room_length.to_be_bytes());
    out.extend_from_slice(room);
    match publication.except {
        None => out.push(0),
        Some(id) => {
            out.push(1);
            out.extend_from_slice(&(id as u64).to_be_bytes());
        }
    }
    match publication.delivery {
        Delivery::Reliable => out.push(0),
        Delivery::Volatile => out.push(1),
        Delivery::Latest(key) => {
            out.push(2);
            out.extend_from_slice(&key.to_be_bytes());
        }
    }
    let count = u32::try_from(publication.values.len()).map_err(|_| TooLarge)?;
    out.extend_from_slice(&count.to_be_bytes());
    for value in &publication.values {
        // The length goes before the value, which is only known once
        // encoded: reserve its place, then fill it in.
        let at = out.len();
        out.extend_from_slice(&[0; 4]);
        codec.encode(value, out);
        let length = u32::try_from(out.len() - at - 4).map_err(|_| TooLarge)?;
        out[at..at + 4].copy_from_slice(&length.to_be_bytes());
        if out.len() > max {
            return Err(TooLarge);
        }
    }
    if out.len() > max {
        return Err(TooLarge);
    }
    Ok(())
}

/// Reads the envelope in `payload`.
pub(crate) fn decode(payload: &Bytes) -> Result<Envelope<'_>, Rejection> {
    let mut reader = Reader {
        bytes: payload,
        at: 0,
    };
    if reader.take(MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(Rejection::NotAnEnvelope);
    }
    match reader.u8() {
        Some(VERSION) => {}
        Some(other) => return Err(Rejection::Version(other)),
        None => return Err(Rejection::NotAnEnvelope),
    }
    read_fields(&mut reader).ok_or(Rejection::Malformed)
}

/// The fields after the version; `None` if they do not add up.
fn read_fields<'a>(reader: &mut Reader<'a>) -> Option<Envelope<'a>> {
    let origin = reader.u64()?;
    let room_length = usize::from(reader.u16()?);
    let room = std::str::from_utf8(reader.take(room_length)?).ok()?;
    let except = match reader.u8()? {
        0 => None,
        1 => Some(StreamId::try_from(reader.u64()?).ok()?),
        _ => return None,
    };
    let delivery = match reader.u8()? {
        0 => Delivery::Reliable,
        1 => Delivery::Volatile,
        2 => Delivery::Latest(reader.u64()?),
        _ => return None,
    };
    let count = usize::try_from(reader.u32()?).ok()?;
    // Each value takes at least its 4-byte length: a count that the bytes
    // left cannot hold is a lie, and reserving for it would let a sender
    // choose how much this node allocates.
    if count > reader.left() / 4 {
        return None;
    }
    let mut values = Vec::with_capacity(count);
    for _ in 0..count {
        let length = usize::try_from(reader.u32()?).ok()?;
        values.push(reader.slice(length)?);
    }
    if reader.left() != 0 {
        return None;
    }
    Some(Envelope {
        origin,
        room,
        except,
        delivery,
        values,
    })
}

/// Reads fields off the front of a payload, each only if it is all there.
struct Reader<'a> {
    bytes: &'a Bytes,
    at: usize,
}

impl<'a> Reader<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.at
    }

    fn take(&mut self, length: usize) -> Option<&'a [u8]> {
        let bytes: &'a [u8] = self.bytes;
        let taken = bytes.get(self.at..self.at.checked_add(length)?)?;
        self.at += length;
        Some(taken)
    }

    /// Like [`take`](Self::take), as a slice of the payload: no copy.
    fn slice(&mut self, length: usize) -> Option<Bytes> {
        let start = self.at;
        self.take(length)?;
        Some(self.bytes.slice(start..self.at))
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn u8(&mut self) -> Option<u8> {
        self.array::<1>().map(|[byte]| byte)
    }

    fn u16(&mut self) -> Option<u16> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Option<u32> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Option<u64> {
        self.array().map(u64::from_be_bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backplane::codec::RawCodec;

    fn publication(delivery: Delivery, except: Option<StreamId>) -> Publication<Bytes> {
        Publication {
            room: "lobby".into(),
            except,
            delivery,
            values: vec![
                Bytes::from_static(b"one"),
                Bytes::new(),
                Bytes::from_static(b"3"),
            ],
        }
    }

    fn encoded(publication: &Publication<Bytes>) -> Bytes {
        let mut out = Vec::new();
        encode(42, publication, &RawCodec, usize::MAX, &mut out).unwrap();
        Bytes::from(out)
    }

    #[test]
    fn every_field_comes_back_as_it_went() {
        for (delivery, except) in [
            (Delivery::Reliable, None),
            (Delivery::Volatile, Some(7)),
            (Delivery::Latest(u64::MAX), Some(0)),
        ] {
            let publication = publication(delivery, except);
            let payload = encoded(&publication);
            assert_eq!(
                decode(&payload),
                Ok(Envelope {
                    origin: 42,
                    room: "lobby",
                    except,
                    delivery,
                    values: publication.values.clone(),
                })
            );
        }
    }

    #[test]
    fn the_layout_is_the_documented_one() {
        let payload = encoded(&Publication {
            room: "r".into(),
            except: None,
            delivery: Delivery::Volatile,
            values: vec![Bytes::from_static(b"hi")],
        });
        assert_eq!(
            &payload[..],
            b"smx\x01\0\0\0\0\0\0\0\x2a\0\x01r\0\x01\0\0\0\x01\0\0\0\x02hi"
        );
    }

    #[test]
    fn every_cut_short_envelope_is_rejected() {
        let payload = encoded(&publication(Delivery::Latest(9), Some(3)));
        for end in 0..payload.len() {
            let cut = payload.slice(..end);
            let expected = if end < 4 {
                Rejection::NotAnEnvelope
            } else {
                Rejection::Malformed
            };
            assert_eq!(decode(&cut), Err(expected), "cut at {end}");
        }
    }

    #[test]
    fn other_versions_and_strangers_are_told_apart() {
        let mut payload = encoded(&publication(Delivery::Reliable, None)).to_vec();
        payload[3] = 2;
        assert_eq!(decode(&Bytes::from(payload)), Err(Rejection::Version(2)));
        assert_eq!(
            decode(&Bytes::from_static(b"{\"json\": true}")),
            Err(Rejection::NotAnEnvelope)
        );
    }

    #[test]
    fn bytes_left_over_or_unknown_classes_are_malformed() {
        let mut longer = encoded(&publication(Delivery::Reliable, None)).to_vec();
        longer.push(0);
        assert_eq!(decode(&Bytes::from(longer)), Err(Rejection::Malformed));

        let mut unknown = encoded(&publication(Delivery::Reliable, None)).to_vec();
        // magic, version, origin, room length, "lobby", except: the class.
        unknown[3 + 1 + 8 + 2 + 5 + 1] = 9;
        assert_eq!(decode(&Bytes::from(unknown)), Err(Rejection::Malformed));
    }

    #[test]
    fn a_count_the_bytes_cannot_hold_reserves_nothing() {
        let mut payload = b"smx\x01".to_vec();
        payload.extend_from_slice(&[0; 8]);
        payload.extend_from_slice(b"\0\x01r\0\0");
        payload.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&Bytes::from(payload)), Err(Rejection::Malformed));
    }

    #[test]
    fn what_exceeds_the_maximum_is_not_encoded() {
        let publication = publication(Delivery::Reliable, None);
        let size = encoded(&publication).len();
        let mut out = Vec::new();
        assert_eq!(encode(1, &publication, &RawCodec, size, &mut out), Ok(()));
        assert_eq!(
            encode(1, &publication, &RawCodec, size - 1, &mut out),
            Err(TooLarge)
        );
        let long_room = Publication {
            room: "r".repeat(70_000).into(),
            ..publication
        };
        assert_eq!(
            encode(1, &long_room, &RawCodec, usize::MAX, &mut out),
            Err(TooLarge)
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes: Vec<u8>) {
            let _ = decode(&Bytes::from(bytes));
        }

        #[test]
        fn arbitrary_bytes_after_the_header_never_panic(bytes: Vec<u8>) {
            let mut payload = b"smx\x01".to_vec();
            payload.extend(bytes);
            let _ = decode(&Bytes::from(payload));
        }
    }
}
