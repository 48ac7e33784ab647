//! Where stream ids come from.

use crate::StreamId;

/// Generates ids for new streams.
///
/// The multiplexer calls [`seed`](IdGen::seed) once, before the first id is
/// taken, with the value given to
/// [`MultiplexerBuilder::id_seed`](crate::MultiplexerBuilder::id_seed) (0 by
/// default), then [`next`](IdGen::next) for each accepted connection. It
/// skips any id that still belongs to a live stream, so a generator may wrap
/// around freely. If it offers nothing but live ids for as many tries as
/// there are live streams plus one, that connection is dropped and counted
/// as an accept error
/// ([`StatsSnapshot::accept_errors`](crate::StatsSnapshot::accept_errors)).
///
/// A generator is handed to the multiplexer by value
/// ([`Multiplexer::with_id_gen`](crate::Multiplexer::with_id_gen),
/// [`MultiplexerBuilder::id_gen`](crate::MultiplexerBuilder::id_gen)), so it
/// needs no `Default`.
///
/// # Examples
///
/// ```
/// use stream_multiplexer::{IdGen, StreamId};
///
/// /// Hands out even ids only.
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
///     fn seed(&mut self, seed: usize) {
///         self.0 = seed & !1;
///     }
/// }
///
/// let mut ids = EvenIds(0);
/// assert_eq!(ids.next(), 2);
/// assert_eq!(ids.next(), 4);
/// assert_eq!(ids.id(), 4);
///
/// ids.seed(101);
/// assert_eq!(ids.next(), 102);
/// ```
pub trait IdGen {
    /// Produces the next id to try. The multiplexer skips it if a live
    /// stream holds it and asks again.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{IdGen, IncrementIdGen};
    ///
    /// let mut ids = IncrementIdGen::default();
    /// assert_eq!(ids.next(), 1);
    /// assert_eq!(ids.next(), 2);
    /// ```
    fn next(&mut self) -> StreamId;

    /// The id most recently produced.
    ///
    /// The multiplexer never calls it: it is part of the trait because
    /// earlier versions had it, so that generators written for them still
    /// compile. Outside the multiplexer (a generator used on its own, or in
    /// a test) it tells where the sequence stands.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{IdGen, IncrementIdGen};
    ///
    /// let mut ids = IncrementIdGen::default();
    /// assert_eq!(ids.id(), 0, "nothing produced yet");
    /// ids.next();
    /// assert_eq!(ids.id(), 1);
    /// ```
    fn id(&self) -> StreamId;

    /// Starts the sequence from `seed`; by default it does nothing.
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::{IdGen, IncrementIdGen};
    ///
    /// let mut ids = IncrementIdGen::default();
    /// ids.seed(41);
    /// assert_eq!(ids.next(), 42);
    /// ```
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
