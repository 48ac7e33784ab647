//! How the bytes on a test connection are cut into messages.

/// The framing a server speaks, and so its clients.
///
/// ```text
/// LengthDelimited { width: 2 }, "hi":  00 02 'h' 'i'
/// LengthDelimited { width: 4 }, "hi":  00 00 00 02 'h' 'i'
/// Lines, "hi":                         'h' 'i' '\n'
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// Each frame behind a big-endian length field `width` bytes wide (the
    /// crate's `LengthDelimitedCodec`).
    LengthDelimited {
        /// Width of the length field, in bytes (1 to 8).
        width: usize,
    },
    /// Text lines, each ending in `\n`.
    Lines,
}

impl Framing {
    /// `payload` as it goes on the wire: behind its length field, or
    /// followed by a newline.
    pub fn encode(self, payload: &[u8]) -> Vec<u8> {
        match self {
            Framing::LengthDelimited { width } => {
                let length = u64::try_from(payload.len()).expect("a length fits a u64");
                assert!(
                    width == 8 || length < 1 << (8 * width),
                    "a frame too long for a {width}-byte length field"
                );
                let mut wire = length.to_be_bytes()[8 - width..].to_vec();
                wire.extend_from_slice(payload);
                wire
            }
            Framing::Lines => {
                let mut wire = payload.to_vec();
                wire.push(b'\n');
                wire
            }
        }
    }
}

/// The length a big-endian length field declares.
pub fn declared_length(field: &[u8]) -> usize {
    let mut bytes = [0; 8];
    bytes[8 - field.len()..].copy_from_slice(field);
    usize::try_from(u64::from_be_bytes(bytes)).expect("a declared length fits a usize")
}
