//! Multiplex many framed connections into channels, each with its own
//! backpressure, on any async runtime.
//!
//! (Crate documentation with the seed's example comes with the core.)

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![warn(missing_debug_implementations, rust_2018_idioms, unreachable_pub)]

mod channel;
pub mod codec;
mod error;
pub mod framed;
mod halves;
mod id_gen;
mod multiplexer;
mod packet;
mod registry;
mod run;
pub mod runtime;
mod stats;
mod stream;
mod wake;

pub use error::MultiplexerError;
pub use halves::{HalvesStream, HalvesStreamBuilder, IntoHalves, Locked};
pub use id_gen::{IdGen, IncrementIdGen};
pub use multiplexer::{BacklogPolicy, Multiplexer, MultiplexerBuilder};
pub use packet::{
    ChannelId, ControlMessage, DisconnectReason, IncomingMessage, IncomingPacket, Iter,
    OutgoingMessage, OutgoingPacket, StreamId,
};
pub use run::Run;
pub use stats::{DisconnectCounts, Stats, StatsSnapshot};
