//! Multiplex many framed connections into channels, each with its own
//! backpressure, on any async runtime.
//!
//! (Crate documentation with the seed's example comes with the core.)

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

pub mod codec;
mod error;
pub mod framed;
mod halves;
mod id_gen;
mod packet;
pub mod runtime;
mod stats;

pub use error::MultiplexerError;
pub use halves::{HalvesStream, HalvesStreamBuilder, IntoHalves, Locked};
pub use id_gen::{IdGen, IncrementIdGen};
pub use packet::{
    ChannelId, ControlMessage, DisconnectReason, IncomingMessage, IncomingPacket, Iter,
    OutgoingMessage, OutgoingPacket, StreamId,
};
pub use stats::{DisconnectCounts, Stats, StatsSnapshot};
