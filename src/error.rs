//! The errors with which [`Run`](crate::Run) can end.

use crate::ChannelId;

/// Why the multiplexer stopped with an error.
///
/// Nothing a client does ends the multiplexer: failed accepts, broken
/// connections and bad frames are handled per stream and counted in
/// [`Stats`](crate::Stats). These errors are about the application's own
/// set-up.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::MultiplexerError;
///
/// let error = MultiplexerError::NoSuchChannel(3);
/// assert_eq!(error.to_string(), "the default channel 3 does not exist");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MultiplexerError {
    /// The multiplexer was given no channel at all.
    #[error("the multiplexer has no channels")]
    NoChannels,
    /// The default channel for new streams is not one of the channels given.
    #[error("the default channel {0} does not exist")]
    NoSuchChannel(ChannelId),
    /// Every channel sink closed or failed, so nothing read could be
    /// delivered any more; every connection was closed.
    #[error("every channel has closed")]
    AllChannelsClosed,
}
