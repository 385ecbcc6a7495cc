//! A patient's requests keep their session's idle clock going: each request
//! is activity ([`crate::actors::session::Activity`]), but a node tells the
//! session at most once per [`activity_lag`] per patient. A device pushing
//! every second would otherwise send its session a message a second, as
//! many as its pushes. The session waits that lag longer before it logs
//! the patient off, so a logoff comes at most that late, never early.

use std::sync::Arc;
use std::time::Duration;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use tokio::time::Instant;

use crate::actors::session::{activity_lag, Activity};
use crate::address::ActorId;
use crate::bus::client::Requester;
use crate::bus::BusMessage;

/// Patients tracked before those quiet for a lag are forgotten.
const PRUNE_ABOVE: usize = 4_096;

/// See the module docs.
pub struct Touches {
    every: Duration,
    /// When each patient's session was last told, by this node.
    told: DashMap<String, Instant>,
    requester: Arc<Requester>,
}

impl Touches {
    pub fn new(session_logoff: Duration, requester: Arc<Requester>) -> Touches {
        Touches {
            every: activity_lag(session_logoff),
            told: DashMap::new(),
            requester,
        }
    }

    /// Whether `patient`'s session is to be told of activity now (at most
    /// once per lag; the first activity after a quiet lag always is).
    fn due(&self, patient: &str, now: Instant) -> bool {
        let again = |told: &mut Instant| {
            let due = now.saturating_duration_since(*told) >= self.every;
            if due {
                *told = now;
            }
            due
        };
        // A patient seen before is looked up without copying their id (the
        // hot path: every request of theirs).
        let due = match self.told.get_mut(patient) {
            Some(mut told) => again(&mut told),
            None => match self.told.entry(patient.to_owned()) {
                Entry::Occupied(mut told) => again(told.get_mut()),
                Entry::Vacant(v) => {
                    v.insert(now);
                    true
                }
            },
        };
        if due && self.told.len() > PRUNE_ABOVE {
            self.told
                .retain(|_, t| now.saturating_duration_since(*t) < self.every);
        }
        due
    }

    /// `patient` made a request: tells their session (in a task of its
    /// own) when due.
    pub fn touch(&self, patient: &str) {
        if !self.due(patient, Instant::now()) {
            return;
        }
        let Ok(to) = ActorId::new(Activity::KIND, patient) else {
            return;
        };
        let requester = Arc::clone(&self.requester);
        let timeout = self.every.max(Duration::from_secs(1));
        actix_rt::spawn(async move {
            if let Err(e) = requester.tell(&to, &Activity, timeout).await {
                tracing::debug!(error = %e, "a session was not told of its patient's activity");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::memory::MemoryBus;
    use crate::bus::BusOptions;

    async fn touches(logoff: Duration) -> Touches {
        let bus: Arc<dyn crate::bus::Bus> = Arc::new(MemoryBus::new(BusOptions::default()));
        let requester = Arc::new(Requester::new(bus).await.unwrap());
        Touches::new(logoff, requester)
    }

    #[actix_rt::test]
    async fn a_session_is_told_at_most_once_per_lag_per_patient() {
        let t = touches(Duration::from_secs(16)).await;
        assert_eq!(t.every, Duration::from_secs(2));
        let start = Instant::now();
        assert!(t.due("p-1", start), "the first activity is told at once");
        assert!(t.due("p-2", start), "each patient has a clock of its own");
        for ms in [1, 500, 1_999] {
            assert!(!t.due("p-1", start + Duration::from_millis(ms)), "{ms} ms");
        }
        assert!(t.due("p-1", start + Duration::from_secs(2)));
        // The clock starts over from what was told, not from what was kept.
        assert!(!t.due("p-1", start + Duration::from_millis(3_999)));
        assert!(t.due("p-1", start + Duration::from_secs(4)));
    }

    #[actix_rt::test]
    async fn patients_quiet_for_a_lag_are_forgotten_beyond_a_bound() {
        let t = touches(Duration::from_secs(8)).await;
        let start = Instant::now();
        for i in 0..=PRUNE_ABOVE {
            assert!(t.due(&format!("p-{i}"), start));
        }
        assert_eq!(t.told.len(), PRUNE_ABOVE + 1);
        // One lag later, the next patient's activity prunes the quiet ones.
        assert!(t.due("p-new", start + Duration::from_secs(1)));
        assert_eq!(t.told.len(), 1);
    }
}
