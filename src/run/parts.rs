//! [`Parts`]: the types one `Run` works with, and their bounds, named once.

use std::marker::PhantomData;

use futures::{Sink, Stream};

use crate::IncomingPacket;

/// The stream-side types of one `Run`: what it writes, what it reads, and
/// where what it reads goes. The steps of `Run` are generic over this one
/// parameter instead of repeating four bounds each.
pub(crate) trait Parts {
    /// A value the application sends to streams.
    type Value: Clone;
    /// What a stream's reader yields.
    type Frame;
    /// A stream's write half.
    type Writer: Sink<Self::Value> + Unpin;
    /// A stream's read half.
    type Reader: Stream<Item = Self::Frame> + Unpin;
    /// A channel's sink.
    type Consumer: Sink<IncomingPacket<Self::Frame>> + Unpin;
}

/// [`Parts`] made of a writer `W`, a reader `R`, values `V` and consumers
/// `Ch`.
pub(crate) struct PartsOf<W, R, V, Ch>(PhantomData<Names<W, R, V, Ch>>);

/// Names the four types without owning any (so `PartsOf` is `Send` and
/// `Sync` whatever they are).
type Names<W, R, V, Ch> = fn() -> (W, R, V, Ch);

impl<W, R, V, Ch> Parts for PartsOf<W, R, V, Ch>
where
    W: Sink<V> + Unpin,
    R: Stream + Unpin,
    V: Clone,
    Ch: Sink<IncomingPacket<R::Item>> + Unpin,
{
    type Value = V;
    type Frame = R::Item;
    type Writer = W;
    type Reader = R;
    type Consumer = Ch;
}
