//! A timer wheel: which streams to look at on each tick of the clock.
//!
//! # Implementation
//!
//! A ring of slots, one per tick; an entry due at tick `t` sits in slot
//! `t % slots`. Each tick empties one slot: the entries due are handed back,
//! the ones due in a later turn of the ring stay. Scheduling and expiring
//! are O(1); a tick costs the entries of one slot, so nothing while no
//! deadline is near.
//!
//! The wheel never cancels: its user checks each entry it gets back against
//! the stream's own state (which keeps the real deadlines, updated with a
//! plain store on every frame), and schedules it again if the deadline
//! moved. So a frame costs no wheel operation, and a stream has about one
//! entry at a time: O(1) per stream per timeout period, no allocation per
//! stream beyond its share of the slots.

/// The wheel's slots hold entries for up to this many ticks ahead without
/// a second turn; longer limits cost one look per turn of the ring.
const MAX_SLOTS: usize = 4096;

/// Entries of type `T`, each due at a tick.
#[derive(Debug)]
pub(crate) struct TimerWheel<T> {
    slots: Box<[Vec<(u64, T)>]>,
    now: u64,
}

impl<T> TimerWheel<T> {
    /// A wheel with enough slots to hold `span` ticks ahead without a second
    /// turn (at most [`MAX_SLOTS`]).
    pub(crate) fn new(span: u64) -> Self {
        let slots = usize::try_from(span.saturating_add(1))
            .unwrap_or(MAX_SLOTS)
            .clamp(1, MAX_SLOTS)
            .next_power_of_two();
        Self {
            slots: (0..slots).map(|_| Vec::new()).collect(),
            now: 0,
        }
    }

    /// The current tick: how many times [`advance`](Self::advance) ran.
    pub(crate) fn now(&self) -> u64 {
        self.now
    }

    /// Schedules `entry` to be handed back at tick `at` (or at the next tick,
    /// if `at` is not in the future). Returns the tick it is due at.
    pub(crate) fn schedule(&mut self, at: u64, entry: T) -> u64 {
        let at = at.max(self.now + 1);
        let slot = self.slot(at);
        self.slots[slot].push((at, entry));
        at
    }

    /// Moves to the next tick and appends the entries due at it to `due`.
    pub(crate) fn advance(&mut self, due: &mut Vec<(u64, T)>) {
        self.now += 1;
        let now = self.now;
        let slot = self.slot(now);
        let entries = &mut self.slots[slot];
        if entries.iter().all(|&(at, _)| at <= now) {
            due.append(entries);
        } else {
            // Entries for a later turn of the ring stay where they are.
            let mut index = 0;
            while index < entries.len() {
                if entries[index].0 <= now {
                    due.push(entries.swap_remove(index));
                } else {
                    index += 1;
                }
            }
        }
        if entries.is_empty() && entries.capacity() > 64 {
            // A burst of entries (thousands of streams connecting in one
            // tick) does not keep its memory for good.
            entries.shrink_to(8);
        }
    }

    fn slot(&self, at: u64) -> usize {
        // The slot count is a power of two, so this is `at % slots`.
        (at as usize) & (self.slots.len() - 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(wheel: &mut TimerWheel<u32>, ticks: u64) -> Vec<(u64, u32)> {
        let mut due = Vec::new();
        for _ in 0..ticks {
            wheel.advance(&mut due);
        }
        due
    }

    #[test]
    fn an_entry_comes_back_at_its_tick_and_not_before() {
        let mut wheel = TimerWheel::new(10);
        wheel.schedule(3, 7);
        assert!(run(&mut wheel, 2).is_empty());
        assert_eq!(run(&mut wheel, 1), [(3, 7)]);
        assert!(run(&mut wheel, 100).is_empty());
    }

    #[test]
    fn an_entry_beyond_the_ring_waits_for_its_turn() {
        let mut wheel = TimerWheel::new(4);
        let slots = wheel.slots.len() as u64;
        wheel.schedule(3 * slots + 1, 1);
        wheel.schedule(1, 2);
        assert_eq!(run(&mut wheel, 1), [(1, 2)]);
        assert!(run(&mut wheel, 3 * slots - 1).is_empty());
        assert_eq!(run(&mut wheel, 1), [(3 * slots + 1, 1)]);
    }

    #[test]
    fn a_deadline_in_the_past_comes_back_at_the_next_tick() {
        let mut wheel = TimerWheel::new(8);
        run(&mut wheel, 5);
        wheel.schedule(2, 9);
        assert_eq!(run(&mut wheel, 1), [(6, 9)]);
    }

    #[test]
    fn slots_are_bounded_whatever_the_span() {
        assert_eq!(TimerWheel::<()>::new(u64::MAX).slots.len(), MAX_SLOTS);
        assert_eq!(TimerWheel::<()>::new(0).slots.len(), 1);
        assert_eq!(TimerWheel::<()>::new(300).slots.len(), 512);
    }
}
