//! Where stream ids come from.

use crate::StreamId;

/// Generates ids for new streams.
///
/// The multiplexer calls [`next`](IdGen::next) once per accepted connection
/// and skips any id that still belongs to a live stream, so a generator may
/// wrap around freely. [`seed`](IdGen::seed) is called once, before the first
/// id is taken, with the value given to
/// [`MultiplexerBuilder::id_seed`](crate::MultiplexerBuilder::id_seed) (0 by
/// default).
///
/// # Examples
///
/// ```
/// use stream_multiplexer::{IdGen, StreamId};
///
/// /// Hands out even ids only.
/// #[derive(Default)]
/// struct EvenIds(StreamId);
///
/// impl IdGen for EvenIds {
///     fn next(&mut self) -> StreamId {
///         self.0 = self.0.wrapping_add(2);
///         self.0
///     }
///     fn id(&self) -> StreamId {
///         self.0
///     }
/// }
///
/// let mut ids = EvenIds::default();
/// assert_eq!(ids.next(), 2);
/// assert_eq!(ids.next(), 4);
/// assert_eq!(ids.id(), 4);
/// ```
pub trait IdGen: Default {
    /// Produces the next id to try.
    fn next(&mut self) -> StreamId;

    /// The id most recently produced.
    fn id(&self) -> StreamId;

    /// Starts the sequence from `seed`; by default it does nothing.
    fn seed(&mut self, _seed: usize) {}
}

/// The default [`IdGen`]: counts up from 1 and wraps at `usize::MAX`.
///
/// Ids still in use when the counter comes round again are skipped by the
/// multiplexer, so wrapping never hands out a live id twice.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::{IdGen, IncrementIdGen};
///
/// let mut ids = IncrementIdGen::default();
/// assert_eq!(ids.next(), 1);
/// assert_eq!(ids.next(), 2);
///
/// ids.seed(usize::MAX);
/// assert_eq!(ids.next(), 0, "wraps at usize::MAX");
/// ```
#[derive(Debug, Default, Clone)]
pub struct IncrementIdGen {
    id: StreamId,
}

impl IdGen for IncrementIdGen {
    fn next(&mut self) -> StreamId {
        self.id = self.id.wrapping_add(1);
        self.id
    }

    fn id(&self) -> StreamId {
        self.id
    }

    fn seed(&mut self, seed: usize) {
        self.id = seed;
    }
}
