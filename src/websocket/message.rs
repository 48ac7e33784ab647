//! [`WsMessage`]: the values a WebSocket connection carries, both ways.

use async_tungstenite::tungstenite::{Message, Utf8Bytes};
use bytes::Bytes;

/// A WebSocket message: text or binary, read from a client or sent to one.
///
/// Both kinds are backed by [`Bytes`], so a clone shares the payload
/// instead of copying it: a message sent to a thousand clients is one
/// allocation. Text is [`Utf8Bytes`], which is checked to be UTF-8 once,
/// when it is made (or when it arrives), and derefs to `str`.
///
/// Control frames (ping, pong, close) are not messages: the connection's
/// halves answer and handle them (see the [module docs](super)).
///
/// # Examples
///
/// ```
/// use bytes::Bytes;
/// use stream_multiplexer::websocket::WsMessage;
///
/// let hello = WsMessage::from("hello");
/// assert_eq!(hello.as_text(), Some("hello"));
///
/// let raw = WsMessage::from(Bytes::from_static(&[0xff, 0x00]));
/// assert_eq!(raw.as_text(), None);
/// assert_eq!(raw.as_bytes(), &[0xff, 0x00]);
///
/// // Cloning shares the payload.
/// let copy = raw.clone();
/// assert_eq!(copy.as_bytes().as_ptr(), raw.as_bytes().as_ptr());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WsMessage {
    /// A text message: UTF-8, checked.
    Text(Utf8Bytes),
    /// A binary message.
    Binary(Bytes),
}

impl WsMessage {
    /// A text message.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::WsMessage;
    ///
    /// let message = WsMessage::text(format!("{} joined", "ada"));
    /// assert_eq!(message.as_text(), Some("ada joined"));
    /// ```
    pub fn text(text: impl Into<Utf8Bytes>) -> Self {
        Self::Text(text.into())
    }

    /// A binary message.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::WsMessage;
    ///
    /// let message = WsMessage::binary(vec![1, 2, 3]);
    /// assert_eq!(message.as_bytes(), &[1, 2, 3]);
    /// assert!(message.is_binary());
    /// ```
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Self::Binary(bytes.into())
    }

    /// The text of a text message; `None` for a binary one.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::WsMessage;
    ///
    /// assert_eq!(WsMessage::from("hi").as_text(), Some("hi"));
    /// assert_eq!(WsMessage::binary(&b"hi"[..]).as_text(), None);
    /// ```
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text.as_str()),
            Self::Binary(_) => None,
        }
    }

    /// The payload, text or binary, as bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::WsMessage;
    ///
    /// assert_eq!(WsMessage::from("hi").as_bytes(), b"hi");
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// Whether this is a text message.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::WsMessage;
    ///
    /// assert!(WsMessage::from("hi").is_text());
    /// assert!(!WsMessage::binary(vec![0]).is_text());
    /// ```
    pub fn is_text(&self) -> bool {
        matches!(self, Self::Text(_))
    }

    /// Whether this is a binary message.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::WsMessage;
    ///
    /// assert!(WsMessage::binary(vec![0]).is_binary());
    /// assert!(!WsMessage::from("hi").is_binary());
    /// ```
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }

    /// The payload's length in bytes.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::WsMessage;
    ///
    /// assert_eq!(WsMessage::from("héllo").len(), 6);
    /// ```
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// Whether the payload is empty.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::websocket::WsMessage;
    ///
    /// assert!(WsMessage::from("").is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The payload as [`Bytes`], without a copy, whatever the kind.
    ///
    /// # Examples
    ///
    /// ```
    /// use bytes::Bytes;
    /// use stream_multiplexer::websocket::WsMessage;
    ///
    /// assert_eq!(WsMessage::from("hi").into_bytes(), Bytes::from("hi"));
    /// ```
    pub fn into_bytes(self) -> Bytes {
        match self {
            Self::Text(text) => text.into(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// The tungstenite message this one is sent as.
    pub(super) fn into_tungstenite(self) -> Message {
        match self {
            Self::Text(text) => Message::Text(text),
            Self::Binary(bytes) => Message::Binary(bytes),
        }
    }
}

/// Text, without a copy.
impl From<Utf8Bytes> for WsMessage {
    fn from(text: Utf8Bytes) -> Self {
        Self::Text(text)
    }
}

/// Text, taking the string's buffer without a copy.
impl From<String> for WsMessage {
    fn from(text: String) -> Self {
        Self::Text(text.into())
    }
}

/// Text that points at the static string, without a copy.
impl From<&'static str> for WsMessage {
    fn from(text: &'static str) -> Self {
        Self::Text(Utf8Bytes::from_static(text))
    }
}

/// Binary, without a copy.
impl From<Bytes> for WsMessage {
    fn from(bytes: Bytes) -> Self {
        Self::Binary(bytes)
    }
}

/// Binary, taking the vector's buffer without a copy.
impl From<Vec<u8>> for WsMessage {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Binary(bytes.into())
    }
}
