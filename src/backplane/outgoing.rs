//! [`BackplaneOutgoing`]: the application's outgoing stream with the
//! messages of other nodes woven in, as the multiplexer polls it.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::Stream;
use futures::stream::FusedStream;

use super::envelope::Publication;
use super::shared::Shared;
use crate::OutgoingPacket;
use crate::packet::Target;

/// The stream to give the multiplexer in place of the application's own:
/// every packet of the application, unchanged and in its order, with the
/// room messages of other nodes woven in.
///
/// Made by [`Backplane::new`](super::Backplane::new). Each
/// [`Message`](OutgoingPacket::Message) to a room that the application
/// sends is yielded as it is (so the local members get it from this node,
/// never through Redis) and offered, once, to the backplane's publication
/// queue; if the queue is full it is dropped there and counted, and the
/// stream goes on. The stream never waits for Redis: everything it does
/// per packet is a clone of the message's values and one push under a
/// lock.
///
/// It takes the application's packets and those of other nodes in turn,
/// so that neither holds the other back for long. It ends when the
/// application's stream ends; the backplane's future then publishes what
/// is queued and resolves.
///
/// # Examples
///
/// See the [module docs](super) for a whole node.
///
/// ```
/// use bytes::Bytes;
/// use futures::channel::mpsc;
/// use stream_multiplexer::OutgoingPacket;
/// use stream_multiplexer::backplane::{Backplane, BackplaneConfig, Connector, RawCodec};
/// use stream_multiplexer::runtime::smol::clock;
///
/// let (_app, app_outgoing) = mpsc::unbounded::<OutgoingPacket<Bytes>>();
/// let config = BackplaneConfig::new(
///     Connector::smol("127.0.0.1:6379"),
///     clock(std::time::Duration::from_millis(100)),
/// );
/// let (backplane, outgoing) = Backplane::new(config, app_outgoing, RawCodec);
/// // `outgoing` goes to `Multiplexer::new`, `backplane.run(rooms)` to an executor.
/// # drop((backplane, outgoing));
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct BackplaneOutgoing<S, V> {
    application: Option<S>,
    shared: Arc<Shared<V>>,
    /// Whose packet to try first at the next poll: the side that did not
    /// go first last time.
    arrivals_first: bool,
}

impl<S, V> BackplaneOutgoing<S, V> {
    pub(crate) fn new(application: S, shared: Arc<Shared<V>>) -> Self {
        Self {
            application: Some(application),
            shared,
            arrivals_first: false,
        }
    }
}

impl<S, V> BackplaneOutgoing<S, V>
where
    S: Stream<Item = OutgoingPacket<V>> + Unpin,
    V: Clone,
{
    /// The application's next packet, after offering it for publishing if
    /// it is a message to a room; `Ready(None)` once its stream has ended.
    fn poll_application(&mut self, cx: &mut Context<'_>) -> Poll<Option<OutgoingPacket<V>>> {
        let Some(application) = &mut self.application else {
            return Poll::Ready(None);
        };
        let packet = match Pin::new(application).poll_next(cx) {
            Poll::Ready(Some(packet)) => packet,
            Poll::Ready(None) => {
                self.application = None;
                self.shared.close();
                return Poll::Ready(None);
            }
            Poll::Pending => return Poll::Pending,
        };
        if let OutgoingPacket::Message(message) = &packet
            && let Target::Room { room, except } = &message.target
        {
            self.shared.offer(Publication {
                room: Arc::clone(room),
                except: *except,
                delivery: message.delivery,
                values: message.values.clone(),
            });
        }
        Poll::Ready(Some(packet))
    }
}

impl<S, V> Stream for BackplaneOutgoing<S, V>
where
    S: Stream<Item = OutgoingPacket<V>> + Unpin,
    V: Clone,
{
    type Item = OutgoingPacket<V>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.application.is_none() {
            return Poll::Ready(None);
        }
        let arrivals_first = this.arrivals_first;
        this.arrivals_first = !arrivals_first;
        if arrivals_first && let Some(packet) = this.shared.next_arrival() {
            return Poll::Ready(Some(packet));
        }
        match this.poll_application(cx) {
            Poll::Ready(Some(packet)) => return Poll::Ready(Some(packet)),
            // The application is done: so is the multiplexer's outgoing
            // stream, whatever other nodes still send.
            Poll::Ready(None) => return Poll::Ready(None),
            Poll::Pending => {}
        }
        // Register before looking, so that an arrival pushed between the
        // look and the return still wakes this task.
        this.shared.outgoing_side.register(cx.waker());
        match this.shared.next_arrival() {
            Some(packet) => Poll::Ready(Some(packet)),
            None => Poll::Pending,
        }
    }
}

impl<S, V> FusedStream for BackplaneOutgoing<S, V>
where
    S: Stream<Item = OutgoingPacket<V>> + Unpin,
    V: Clone,
{
    fn is_terminated(&self) -> bool {
        self.application.is_none()
    }
}

impl<S, V> Drop for BackplaneOutgoing<S, V> {
    fn drop(&mut self) {
        self.shared.close();
    }
}

impl<S, V> fmt::Debug for BackplaneOutgoing<S, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackplaneOutgoing")
            .field("ended", &self.application.is_none())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Delivery, OutgoingMessage};
    use futures::StreamExt;
    use futures::executor::block_on;

    #[test]
    fn room_messages_pass_through_and_are_offered_once() {
        let shared = Arc::new(Shared::new(8, 8));
        let packets = vec![
            OutgoingPacket::Message(OutgoingMessage::to_room("r", ["a"]).except(3).volatile()),
            OutgoingPacket::Message(OutgoingMessage::new([1], ["direct"])),
            OutgoingPacket::Join(vec![1], "r".into()),
        ];
        let outgoing =
            BackplaneOutgoing::new(futures::stream::iter(packets.clone()), shared.clone());
        assert_eq!(block_on(outgoing.collect::<Vec<_>>()), packets);
        let publication = shared.next_publication().unwrap();
        assert_eq!(&*publication.room, "r");
        assert_eq!(publication.except, Some(3));
        assert_eq!(publication.delivery, Delivery::Volatile);
        assert_eq!(publication.values, ["a"]);
        assert!(shared.next_publication().is_none(), "only room messages");
        assert!(shared.is_closed(), "the end closes the backplane");
    }

    #[test]
    fn arrivals_and_the_application_take_turns() {
        let shared = Arc::new(Shared::new(8, 8));
        let from_app = |n| OutgoingPacket::Message(OutgoingMessage::new([1], [n]));
        let from_node = |n| OutgoingPacket::Message(OutgoingMessage::to_room("r", [n]));
        for n in 10..13 {
            shared.arrive(from_node(n)).unwrap();
        }
        let application =
            futures::stream::iter((0..3).map(from_app)).chain(futures::stream::pending());
        let mut outgoing = BackplaneOutgoing::new(application, shared.clone());
        let order: Vec<_> = block_on(outgoing.by_ref().take(6).collect());
        assert_eq!(
            order,
            [
                from_app(0),
                from_node(10),
                from_app(1),
                from_node(11),
                from_app(2),
                from_node(12)
            ]
        );
    }
}
