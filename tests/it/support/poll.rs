//! Waiting for something that happens asynchronously: one polling loop for
//! every test, with a time limit and a description that the panic names.
//!
//! A check answers `bool` (done or not), `Option<T>` (the value once there)
//! or `Result<T, E>` (the value, or what was wrong the last time: the panic
//! quotes it). The async form uses tokio's clock, so it works in paused time
//! (the wait then costs no real time); the blocking form is for plain
//! `#[test]`s and processes.

use std::fmt::Display;
use std::time::Duration;

/// What one look of a poll found: done (with a value) or not yet (and, if
/// the check said, what it saw instead).
pub trait Check {
    type Value;
    fn done(self) -> Result<Self::Value, Option<String>>;
}

impl Check for bool {
    type Value = ();
    fn done(self) -> Result<(), Option<String>> {
        if self {
            Ok(())
        } else {
            Err(None)
        }
    }
}

impl<T> Check for Option<T> {
    type Value = T;
    fn done(self) -> Result<T, Option<String>> {
        self.ok_or(None)
    }
}

impl<T, E: Display> Check for Result<T, E> {
    type Value = T;
    fn done(self) -> Result<T, Option<String>> {
        self.map_err(|e| Some(e.to_string()))
    }
}

fn timed_out(what: &str, limit: Duration, last: Option<String>) -> ! {
    match last {
        Some(last) => panic!("timed out after {limit:?} waiting for {what}; last seen: {last}"),
        None => panic!("timed out after {limit:?} waiting for {what}"),
    }
}

/// Runs `check` every `every` until it is done, for at most `limit`; its
/// value. Panics naming `what` (and what the last check saw) on timeout.
pub async fn poll_until<C: Check>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: impl AsyncFnMut() -> C,
) -> C::Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let last = match check().await.done() {
            Ok(value) => return value,
            Err(last) => last,
        };
        if tokio::time::Instant::now() >= deadline {
            timed_out(what, limit, last);
        }
        tokio::time::sleep(every).await;
    }
}

/// [`poll_until`] for code outside any runtime: sleeps the thread between
/// checks.
pub fn poll_until_blocking<C: Check>(
    what: &str,
    limit: Duration,
    every: Duration,
    mut check: impl FnMut() -> C,
) -> C::Value {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let last = match check().done() {
            Ok(value) => return value,
            Err(last) => last,
        };
        if std::time::Instant::now() >= deadline {
            timed_out(what, limit, last);
        }
        std::thread::sleep(every);
    }
}
