//! Nicknames in use, shared by the lobby (which hands them out) and the
//! rooms (which give them back).

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use crate::text::fold;

/// The names taken, folded (see [`fold`]): `Bob` cannot log in while
/// `bob` is online, and each keeps the case it chose for display. Locked
/// once per `/nick` and once per user leaving, never per chat line.
#[derive(Debug, Default)]
pub(crate) struct Nicknames {
    taken: HashSet<String>,
}

pub(crate) type SharedNicknames = Arc<Mutex<Nicknames>>;

impl Nicknames {
    pub(crate) fn shared() -> SharedNicknames {
        Arc::default()
    }

    /// Locks the names. A task that panicked holding the lock left the set
    /// consistent (each method changes it in one step), so a poisoned lock
    /// is still usable.
    pub(crate) fn lock(shared: &SharedNicknames) -> MutexGuard<'_, Self> {
        shared.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes `name`, unless someone has it already, in any case.
    pub(crate) fn claim(&mut self, name: &str) -> bool {
        self.taken.insert(fold(name))
    }

    pub(crate) fn release(&mut self, name: &str) {
        self.taken.remove(&fold(name));
    }
}
