//! Activity due to be written: gathered per subject on the request path,
//! written together by [`super::Gate::write_activity`] (one statement, not
//! one commit per request), and gathered again when the database did not
//! take it.

use std::collections::HashMap;

/// By subject: the role and time of its latest activity due.
#[derive(Default)]
pub(super) struct Gathered(std::sync::Mutex<HashMap<String, (&'static str, u64)>>);

impl Gathered {
    /// Gathers `subject`'s activity at `at_ms` in `role`; the latest
    /// activity of a subject wins (with its role).
    pub(super) fn gather(&self, subject: String, role: &'static str, at_ms: u64) {
        let mut due = self.lock();
        let kept = due.entry(subject).or_insert((role, at_ms));
        if at_ms >= kept.1 {
            *kept = (role, at_ms);
        }
    }

    /// Everything gathered so far, as `(subject, role, at_ms)`; none is
    /// left.
    pub(super) fn take(&self) -> Vec<(String, &'static str, u64)> {
        self.lock()
            .drain()
            .map(|(subject, (role, at))| (subject, role, at))
            .collect()
    }

    /// Subjects gathered now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (&'static str, u64)>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}
