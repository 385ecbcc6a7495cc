//! The request path's cached view of who may reach what (issue 15): a
//! clinician's place on a patient's care team, and the patient a consult or
//! a device belongs to. With it a request is authorized without reading the
//! database each time, and a consult command asks the consult's actor once
//! (the command), not twice (its view, then the command).
//!
//! Why no entry grants what the database would refuse:
//! - **Care team** (clinician, patient → on the team): only memberships
//!   found are kept; a refusal is never kept, so an assignment works at
//!   once. Every access change that names the clinician
//!   ([`super::gate::AccessChanged`] on [`super::gate::ACCESS_TOPIC`]: taken
//!   off a care team, deactivated, logged off, …) drops the clinician's
//!   entries: on the node that made the change before it answers
//!   ([`super::gate::Gate::announce`]), on every other node when the event
//!   arrives, before the node's own listeners hear of it. Break-glass grants
//!   are not kept (rare, and they expire). An entry is also at most
//!   [`MAX_AGE_MS`] old: the bound when an announcement is lost while the
//!   subscription stays up (its publish failed, and the request that made
//!   the change answered an error), or while a lost connection is not yet
//!   set up again.
//! - **Consult → patient** and **device → patient**: fixed once known (a
//!   consult's patient is set by its request and never changes; a device
//!   is registered to one patient for good), so no change invalidates them.
//!   Who takes part in a consult and whether it is over are not cached:
//!   the consult's actor decides them when it gets the command (the one ask
//!   a write makes), from its own state.
//!
//! A cache that cannot be sure holds nothing. When the event subscription
//! is set up again after it was lost ([`crate::bus::Subscription::resets`]:
//! what was published meanwhile is gone) every entry is dropped; when it
//! ends, every entry is dropped and nothing is kept from then on. An entry
//! read from the database while an invalidation ran is not kept (a
//! generation counter, checked after the entry is stored).
//!
//! It must not decide (the rules stay in [`super::access`]), audit (every
//! access is audited by its caller, whether the cache answered or not), or
//! hold anything but ids.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::Arc;

use dashmap::DashMap;

/// Longest a care-team membership is trusted without reading it again.
pub const MAX_AGE_MS: u64 = 5_000;
/// Entries per map before it is emptied (a bound on memory, not a policy).
const CAPACITY: usize = 100_000;

/// See the module docs. One per node, shared by its requests.
pub struct AuthzCache {
    /// Bumped by every invalidation: a lookup that started before a bump
    /// does not keep what it read.
    generation: AtomicU64,
    /// Whether the invalidations can be heard: until the event subscription
    /// runs, and after it ends, nothing is kept or served.
    live: AtomicBool,
    /// clinician → (patient → when the membership was read, Unix ms).
    care_team: DashMap<String, HashMap<String, u64>>,
    /// consult → its patient.
    consult_patient: DashMap<String, String>,
    /// device → its patient.
    device_patient: DashMap<String, String>,
}

impl Default for AuthzCache {
    fn default() -> Self {
        AuthzCache {
            generation: AtomicU64::new(0),
            live: AtomicBool::new(false),
            care_team: DashMap::new(),
            consult_patient: DashMap::new(),
            device_patient: DashMap::new(),
        }
    }
}

impl AuthzCache {
    /// A cache that keeps nothing until [`Self::follow`] is called.
    pub fn new() -> Arc<AuthzCache> {
        Arc::default()
    }

    /// Starts keeping entries, once the event subscription runs (see the
    /// module docs). The caller feeds the subscription's access changes to
    /// [`Self::forget_subject`], calls [`Self::forget_all`] each time the
    /// subscription is set up again, and [`Self::stop`] when it ends.
    pub fn follow(&self) {
        self.live.store(true, SeqCst);
    }

    /// The event subscription ended: nothing is kept or served from now on.
    pub fn stop(&self) {
        self.live.store(false, SeqCst);
        self.forget_all();
    }

    /// Drops what is known of `subject`'s care teams.
    pub fn forget_subject(&self, subject: &str) {
        self.generation.fetch_add(1, SeqCst);
        self.care_team.remove(subject);
    }

    /// Drops every entry.
    pub fn forget_all(&self) {
        self.generation.fetch_add(1, SeqCst);
        self.care_team.clear();
        self.consult_patient.clear();
        self.device_patient.clear();
    }

    /// Whether `clinician` is on `patient`'s care team at `now_ms`: kept,
    /// or `look` (the database), kept when it says yes.
    pub async fn on_care_team<E>(
        &self,
        patient: &str,
        clinician: &str,
        now_ms: u64,
        look: impl Future<Output = Result<bool, E>>,
    ) -> Result<bool, E> {
        if self.live.load(SeqCst) {
            let read_at = self
                .care_team
                .get(clinician)
                .and_then(|team| team.get(patient).copied());
            if read_at.is_some_and(|at| at <= now_ms && now_ms - at < MAX_AGE_MS) {
                return Ok(true);
            }
        }
        let generation = self.generation.load(SeqCst);
        let on = look.await?;
        if on && self.live.load(SeqCst) {
            if self.care_team.len() >= CAPACITY {
                self.care_team.clear();
            }
            self.care_team
                .entry(clinician.to_owned())
                .or_default()
                .insert(patient.to_owned(), now_ms);
            if self.generation.load(SeqCst) != generation {
                // An invalidation ran while the database was read: what
                // was read may be what it invalidated.
                if let Some(mut team) = self.care_team.get_mut(clinician) {
                    team.remove(patient);
                }
            }
        }
        Ok(on)
    }

    /// The patient of consult `consult`: kept, or `look`, kept when it
    /// names one.
    pub async fn consult_patient<E>(
        &self,
        consult: &str,
        look: impl Future<Output = Result<Option<String>, E>>,
    ) -> Result<Option<String>, E> {
        self.patient_of(&self.consult_patient, consult, look).await
    }

    /// The patient device `device` is registered to: kept, or `look`, kept
    /// when it names one.
    pub async fn device_patient<E>(
        &self,
        device: &str,
        look: impl Future<Output = Result<Option<String>, E>>,
    ) -> Result<Option<String>, E> {
        self.patient_of(&self.device_patient, device, look).await
    }

    async fn patient_of<E>(
        &self,
        map: &DashMap<String, String>,
        id: &str,
        look: impl Future<Output = Result<Option<String>, E>>,
    ) -> Result<Option<String>, E> {
        if self.live.load(SeqCst) {
            if let Some(patient) = map.get(id) {
                return Ok(Some(patient.clone()));
            }
        }
        let generation = self.generation.load(SeqCst);
        let patient = look.await?;
        if let Some(p) = patient.as_ref().filter(|_| self.live.load(SeqCst)) {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(id.to_owned(), p.clone());
            if self.generation.load(SeqCst) != generation {
                map.remove(id);
            }
        }
        Ok(patient)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::AtomicUsize;

    /// A database answer that counts how often it is read (when awaited).
    async fn answer<T>(reads: &AtomicUsize, v: T) -> Result<T, Infallible> {
        reads.fetch_add(1, SeqCst);
        Ok(v)
    }

    fn live() -> Arc<AuthzCache> {
        let c = AuthzCache::new();
        c.follow();
        c
    }

    #[tokio::test]
    async fn a_membership_found_is_served_from_the_cache_until_it_is_too_old() {
        let (c, reads) = (live(), AtomicUsize::new(0));
        let on = |now| c.on_care_team("p-1", "dr-1", now, answer(&reads, true));
        assert_eq!(on(1_000).await, Ok(true));
        assert_eq!(on(1_000 + MAX_AGE_MS - 1).await, Ok(true));
        assert_eq!(reads.load(SeqCst), 1, "the second check read the database");
        assert_eq!(on(1_000 + MAX_AGE_MS).await, Ok(true));
        assert_eq!(
            reads.load(SeqCst),
            2,
            "a membership older than MAX_AGE_MS was trusted"
        );
    }

    #[tokio::test]
    async fn a_refusal_is_never_kept_so_an_assignment_works_at_once() {
        let (c, reads) = (live(), AtomicUsize::new(0));
        assert_eq!(
            c.on_care_team("p-1", "dr-1", 1, answer(&reads, false))
                .await,
            Ok(false)
        );
        assert_eq!(
            c.on_care_team("p-1", "dr-1", 2, answer(&reads, true)).await,
            Ok(true)
        );
        assert_eq!(reads.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn a_change_naming_the_clinician_drops_its_memberships_only() {
        let (c, reads) = (live(), AtomicUsize::new(0));
        for (p, dr) in [("p-1", "dr-1"), ("p-2", "dr-1"), ("p-1", "dr-2")] {
            c.on_care_team(p, dr, 1, answer(&reads, true))
                .await
                .unwrap();
        }
        c.forget_subject("dr-1");
        // Removed from the team: the database is asked, and says no.
        assert_eq!(
            c.on_care_team("p-1", "dr-1", 2, answer(&reads, false))
                .await,
            Ok(false)
        );
        assert_eq!(
            c.on_care_team("p-2", "dr-1", 2, answer(&reads, false))
                .await,
            Ok(false)
        );
        assert_eq!(reads.load(SeqCst), 5);
        // Another clinician's membership is still known.
        assert_eq!(
            c.on_care_team("p-1", "dr-2", 2, answer(&reads, false))
                .await,
            Ok(true)
        );
        assert_eq!(reads.load(SeqCst), 5);
    }

    #[tokio::test]
    async fn a_membership_read_while_an_invalidation_ran_is_not_kept() {
        let (c, reads) = (live(), AtomicUsize::new(0));
        let racing = async {
            // The removal commits and is announced while this read is under way.
            c.forget_subject("dr-1");
            Ok::<_, Infallible>(true)
        };
        assert_eq!(c.on_care_team("p-1", "dr-1", 1, racing).await, Ok(true));
        assert_eq!(
            c.on_care_team("p-1", "dr-1", 2, answer(&reads, false))
                .await,
            Ok(false)
        );
        assert_eq!(
            reads.load(SeqCst),
            1,
            "a membership read before its removal was kept"
        );
    }

    #[tokio::test]
    async fn consult_and_device_patients_are_kept_once_known() {
        let (c, reads) = (live(), AtomicUsize::new(0));
        // Unknown (not requested yet): asked again next time.
        assert_eq!(
            c.consult_patient("c-1", answer(&reads, None)).await,
            Ok(None)
        );
        let p = Some("p-1".to_owned());
        assert_eq!(
            c.consult_patient("c-1", answer(&reads, p.clone())).await,
            Ok(p.clone())
        );
        assert_eq!(
            c.consult_patient("c-1", answer(&reads, None)).await,
            Ok(p.clone())
        );
        assert_eq!(
            c.device_patient("d-1", answer(&reads, p.clone())).await,
            Ok(p.clone())
        );
        assert_eq!(
            c.device_patient("d-1", answer(&reads, None)).await,
            Ok(p.clone())
        );
        assert_eq!(reads.load(SeqCst), 3);
        // A device's id is not a consult's.
        assert_eq!(
            c.consult_patient("d-1", answer(&reads, None)).await,
            Ok(None)
        );
    }

    #[tokio::test]
    async fn nothing_is_kept_before_the_subscription_runs_nor_after_it_ends() {
        let (c, reads) = (AuthzCache::new(), AtomicUsize::new(0));
        c.on_care_team("p-1", "dr-1", 1, answer(&reads, true))
            .await
            .unwrap();
        c.on_care_team("p-1", "dr-1", 2, answer(&reads, true))
            .await
            .unwrap();
        assert_eq!(reads.load(SeqCst), 2, "kept before the subscription ran");
        c.follow();
        c.on_care_team("p-1", "dr-1", 3, answer(&reads, true))
            .await
            .unwrap();
        c.device_patient("d-1", answer(&reads, Some("p-1".to_owned())))
            .await
            .unwrap();
        c.stop();
        assert_eq!(
            c.on_care_team("p-1", "dr-1", 4, answer(&reads, false))
                .await,
            Ok(false)
        );
        assert_eq!(
            c.device_patient("d-1", answer(&reads, None)).await,
            Ok(None)
        );
        c.on_care_team("p-1", "dr-1", 5, answer(&reads, true))
            .await
            .unwrap();
        c.on_care_team("p-1", "dr-1", 6, answer(&reads, true))
            .await
            .unwrap();
        assert_eq!(reads.load(SeqCst), 8, "kept after the subscription ended");
    }
}
