//! Multiplex many framed connections into channels, each with its own
//! backpressure, on any async runtime.
//!
//! (Crate documentation with the seed's example comes with the core.)

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

mod error;
mod id_gen;
mod packet;
mod stats;

pub use error::MultiplexerError;
pub use id_gen::{IdGen, IncrementIdGen};
pub use packet::{
    ChannelId, ControlMessage, DisconnectReason, IncomingMessage, IncomingPacket, Iter,
    OutgoingMessage, OutgoingPacket, StreamId,
};
pub use stats::{DisconnectCounts, Stats, StatsSnapshot};
