//! The request path's reads and first writes, gathered: a subject's access
//! state, a device's record, and a subject's first activity in a role.
//!
//! A node caches each of them once known, so they are asked when a subject
//! or a device is new to the node: when a fleet of devices connects at
//! once, or when a dead node's clients come to the survivors. Then hundreds
//! are asked within a second, and asked one by one each is a statement (the
//! first activity a commit) taking a pool connection in turn, ahead of the
//! write rounds of the actors already running. Here each kind has a queue
//! ([`super::batches::ask`]): the first caller to find no worker at work
//! starts one, which serves every request queued (up to [`MAX_LOOKUPS`]) with
//! one statement, and again until none waits. A request alone is served at
//! once. Each caller still waits for its own answer: a first activity is
//! committed before its request goes on, as before.

use super::access::AccountState;
use super::batches::Batches;
use super::people::Device;

/// Requests served by one statement at most.
pub const MAX_LOOKUPS: usize = 256;

/// An error as the callers of a batch see it (its text: the modules that
/// serve the batches name no type of this one, which imports theirs).
type Failed = String;

/// The queues, shared by every clone of a store.
pub(crate) struct Lookups {
    /// `(subject, now_ms)`: access states.
    pub(super) accounts: Batches<(String, u64), Result<Option<AccountState>, Failed>>,
    /// Device ids: registered devices.
    pub(super) devices: Batches<String, Result<Option<Device>, Failed>>,
    /// `(subject, role, at_ms)`: activity written before its request goes on.
    pub(super) touches: Batches<(String, String, u64), Result<(), Failed>>,
}

impl super::Store {
    /// How many batches of lookups this store served (for tests).
    #[doc(hidden)]
    pub fn lookup_batches(&self) -> u64 {
        let l = &self.lookups;
        l.accounts.taken() + l.devices.taken() + l.touches.taken()
    }
}

impl Default for Lookups {
    fn default() -> Lookups {
        Lookups {
            accounts: Batches::new(MAX_LOOKUPS),
            devices: Batches::new(MAX_LOOKUPS),
            touches: Batches::new(MAX_LOOKUPS),
        }
    }
}
