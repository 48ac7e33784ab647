//! Several multiplexers behind one port, one per core: ids that never
//! collide across them, and a [`Router`] that sends each packet to the
//! multiplexer holding its streams.
//!
//! A [`Run`](crate::Run) is one future, so one multiplexer does its I/O on
//! one core. To use N cores, run N multiplexers, each on a thread of its own
//! (or on a multi-threaded executor): each listens on the same port (with
//! `SO_REUSEPORT`, through `runtime::smol::bind_reuse_port`, the kernel
//! spreads connections over them), takes its ids from a [`ShardIds`], and
//! reads the application's packets from one output of a [`Router`]. The
//! channels' sinks can be clones of the same senders, so one consumer per
//! channel hears every shard.
//!
//! The application never needs to know where a stream lives: the router
//! sends a packet's ids to the shards that hold them (the id says which),
//! and a message to a room to every shard (each shard's members are its
//! own; a room spans them all).
//!
//! # Examples
//!
//! ```
//! use stream_multiplexer::shard::{ShardIds, shard_of};
//! use stream_multiplexer::IdGen;
//!
//! let mut second_of_four = ShardIds::new(1, 4);
//! let ids: Vec<_> = (0..3).map(|_| second_of_four.next()).collect();
//! assert_eq!(ids, [5, 9, 13]);
//! assert!(ids.iter().all(|&id| shard_of(id, 4) == 1));
//! ```

use std::pin::Pin;
use std::task::{Context, Poll};

use futures::Sink;

use crate::packet::Target;
use crate::{IdGen, OutgoingMessage, OutgoingPacket, StreamId};

/// The shard that holds stream `id`, among `shards` made with [`ShardIds`].
///
/// # Examples
///
/// ```
/// use stream_multiplexer::shard::shard_of;
///
/// assert_eq!(shard_of(13, 4), 1);
/// ```
pub fn shard_of(id: StreamId, shards: usize) -> usize {
    id % shards.max(1)
}

/// The ids of shard `shard` of `shards`: every id `i` it hands out has
/// `i % shards == shard`, so no two shards ever hand out the same id, and
/// [`shard_of`] finds the shard from the id alone.
///
/// Counts up from the shard's first id above zero and wraps at
/// `usize::MAX` back to its smallest; the multiplexer skips ids still in
/// use, as with [`IncrementIdGen`](crate::IncrementIdGen).
///
/// # Examples
///
/// ```
/// use stream_multiplexer::shard::ShardIds;
/// use stream_multiplexer::{IdGen, MultiplexerBuilder, IncomingPacket, OutgoingPacket};
/// use futures::channel::mpsc;
///
/// let (lobby, _lobby_rx) = mpsc::channel::<IncomingPacket<u8>>(8);
/// let (_outgoing_tx, outgoing) = mpsc::channel::<OutgoingPacket<u8>>(8);
/// let shard_0_of_2 = MultiplexerBuilder::new(16)
///     .id_gen(ShardIds::new(0, 2))
///     .build(outgoing, vec![lobby]);
/// # drop(shard_0_of_2);
/// let mut ids = ShardIds::new(0, 2);
/// assert_eq!((ids.next(), ids.next()), (2, 4));
/// ```
#[derive(Debug, Clone)]
pub struct ShardIds {
    shard: usize,
    shards: usize,
    last: StreamId,
}

impl ShardIds {
    /// The ids of shard `shard` (counted from 0) of `shards` (at least 1;
    /// a `shard` past the last is taken modulo `shards`).
    ///
    /// # Examples
    ///
    /// ```
    /// use stream_multiplexer::IdGen;
    /// use stream_multiplexer::shard::ShardIds;
    ///
    /// let mut alone = ShardIds::new(0, 1);
    /// assert_eq!(alone.next(), 1);
    /// ```
    pub fn new(shard: usize, shards: usize) -> Self {
        let shards = shards.max(1);
        let shard = shard % shards;
        Self {
            shard,
            shards,
            last: shard,
        }
    }
}

impl IdGen for ShardIds {
    fn next(&mut self) -> StreamId {
        self.last = match self.last.checked_add(self.shards) {
            Some(id) => id,
            // Round again from the smallest id of this shard above zero.
            None if self.shard == 0 => self.shards,
            None => self.shard,
        };
        self.last
    }

    fn id(&self) -> StreamId {
        self.last
    }

    fn seed(&mut self, seed: usize) {
        // Keep to this shard's ids whatever the seed.
        self.last = (seed - seed % self.shards)
            .checked_add(self.shard)
            .unwrap_or(self.shard);
    }
}

/// A [`Sink`] of the application's packets that hands each shard the part
/// that concerns it: ids go to the shard that holds them ([`shard_of`]), a
/// message to a room goes to every shard.
///
/// It is ready when every shard's sink is: a shard whose outgoing queue is
/// full holds the others up, as one outgoing stream would.
///
/// # Examples
///
/// ```
/// use futures::channel::mpsc;
/// use futures::{SinkExt, StreamExt, executor::block_on};
/// use stream_multiplexer::shard::Router;
/// use stream_multiplexer::{OutgoingMessage, OutgoingPacket};
///
/// block_on(async {
///     let (shard_0, mut shard_0_rx) = mpsc::unbounded::<OutgoingPacket<&str>>();
///     let (shard_1, mut shard_1_rx) = mpsc::unbounded::<OutgoingPacket<&str>>();
///     let mut router = Router::new(vec![shard_0, shard_1]);
///
///     router.send(OutgoingPacket::Message(OutgoingMessage::new([2, 3, 4], ["hi"]))).await?;
///     let to_0 = shard_0_rx.next().await.unwrap();
///     assert_eq!(to_0.stream_ids().copied().collect::<Vec<_>>(), [2, 4]);
///     let to_1 = shard_1_rx.next().await.unwrap();
///     assert_eq!(to_1.stream_ids().copied().collect::<Vec<_>>(), [3]);
///
///     router.send(OutgoingPacket::Message(OutgoingMessage::to_room("den", ["all"]))).await?;
///     assert!(shard_0_rx.next().await.is_some() && shard_1_rx.next().await.is_some());
///     Ok::<(), mpsc::SendError>(())
/// })?;
/// # Ok::<(), mpsc::SendError>(())
/// ```
#[derive(Debug)]
pub struct Router<S> {
    shards: Vec<S>,
}

impl<S> Router<S> {
    /// A router over the shards' outgoing sinks: the stream whose ids
    /// [`ShardIds::new(k, n)`](ShardIds::new) makes is `shards[k]`.
    ///
    /// # Examples
    ///
    /// See [`Router`].
    ///
    /// ```
    /// use futures::channel::mpsc;
    /// use stream_multiplexer::OutgoingPacket;
    /// use stream_multiplexer::shard::Router;
    ///
    /// let (one, _rx) = mpsc::unbounded::<OutgoingPacket<()>>();
    /// let router = Router::new(vec![one]);
    /// # drop(router);
    /// ```
    pub fn new(shards: Vec<S>) -> Self {
        Self { shards }
    }

    /// Splits `packet` into the packets for each shard, in shard order
    /// (`None` for a shard it does not concern).
    fn split<V: Clone>(&self, packet: OutgoingPacket<V>) -> Vec<Option<OutgoingPacket<V>>> {
        let n = self.shards.len();
        let by_shard = |ids: Vec<StreamId>| {
            let mut parts: Vec<Vec<StreamId>> = vec![Vec::new(); n];
            for id in ids {
                parts[shard_of(id, n)].push(id);
            }
            parts
        };
        let keep = |ids: Vec<StreamId>, make: &dyn Fn(Vec<StreamId>) -> OutgoingPacket<V>| {
            by_shard(ids)
                .into_iter()
                .map(|ids| (!ids.is_empty()).then(|| make(ids)))
                .collect()
        };
        match packet {
            OutgoingPacket::Message(message) => match message.target {
                Target::Ids(ids) => {
                    let (values, delivery) = (message.values, message.delivery);
                    keep(ids, &|ids| {
                        OutgoingPacket::Message(OutgoingMessage {
                            target: Target::Ids(ids),
                            values: values.clone(),
                            delivery,
                        })
                    })
                }
                target @ Target::Room { .. } => {
                    let message = OutgoingMessage { target, ..message };
                    vec![Some(OutgoingPacket::Message(message)); n]
                }
            },
            OutgoingPacket::ChangeChannel(ids, channel) => {
                keep(ids, &|ids| OutgoingPacket::ChangeChannel(ids, channel))
            }
            OutgoingPacket::Shutdown(ids) => keep(ids, &OutgoingPacket::Shutdown),
            OutgoingPacket::Join(ids, room) => {
                keep(ids, &|ids| OutgoingPacket::Join(ids, room.clone()))
            }
            OutgoingPacket::Leave(ids, room) => {
                keep(ids, &|ids| OutgoingPacket::Leave(ids, room.clone()))
            }
        }
    }
}

impl<S, V> Sink<OutgoingPacket<V>> for Router<S>
where
    S: Sink<OutgoingPacket<V>> + Unpin,
    V: Clone,
{
    type Error = S::Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut ready = true;
        for shard in &mut self.get_mut().shards {
            ready &= Pin::new(shard).poll_ready(cx)?.is_ready();
        }
        if ready {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn start_send(self: Pin<&mut Self>, packet: OutgoingPacket<V>) -> Result<(), Self::Error> {
        let this = self.get_mut();
        let parts = this.split(packet);
        for (shard, part) in this.shards.iter_mut().zip(parts) {
            if let Some(part) = part {
                Pin::new(shard).start_send(part)?;
            }
        }
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut done = true;
        for shard in &mut self.get_mut().shards {
            done &= Pin::new(shard).poll_flush(cx)?.is_ready();
        }
        if done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let mut done = true;
        for shard in &mut self.get_mut().shards {
            done &= Pin::new(shard).poll_close(cx)?.is_ready();
        }
        if done {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_ids_never_collide_and_wrap_within_their_shard() {
        let mut shards: Vec<ShardIds> = (0..3).map(|k| ShardIds::new(k, 3)).collect();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            for (k, ids) in shards.iter_mut().enumerate() {
                let id = ids.next();
                assert_eq!(shard_of(id, 3), k);
                assert!(seen.insert(id), "{id} twice");
            }
        }
        let mut last = ShardIds::new(2, 3);
        last.seed(usize::MAX - 1);
        let before = last.id();
        let wrapped = last.next();
        assert!(wrapped < before, "wrapped from {before} to {wrapped}");
        assert_eq!(shard_of(wrapped, 3), 2);
    }
}
