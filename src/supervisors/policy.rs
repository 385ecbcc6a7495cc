//! The vocabulary of supervision, in Erlang/OTP's terms: restart policies,
//! strategies, shutdown, and restart intensity (R restarts within T).
//!
//! Pure values and one small counter; nothing here touches actix.

use std::collections::VecDeque;
use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

/// When a child that exited is started again.
///
/// | policy    | crashed | exited normally / passivated | shut down by parent |
/// |-----------|---------|------------------------------|---------------------|
/// | permanent | restart | restart                      | no                  |
/// | transient | restart | no (removed)                 | no                  |
/// | temporary | no      | no (removed)                 | no                  |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartPolicy {
    Permanent,
    Transient,
    Temporary,
}

impl RestartPolicy {
    /// Whether an exit for `cause` calls for a restart under this policy.
    pub fn restarts_after(self, abnormal: bool) -> bool {
        match self {
            RestartPolicy::Permanent => true,
            RestartPolicy::Transient => abnormal,
            RestartPolicy::Temporary => false,
        }
    }
}

/// Which children restart when one of them crashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the crashed child.
    OneForOne,
    /// Every child: all are stopped in reverse start order, then all started in order.
    OneForAll,
    /// The crashed child and every child started after it.
    RestForOne,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::OneForOne => "one_for_one",
            Strategy::OneForAll => "one_for_all",
            Strategy::RestForOne => "rest_for_one",
        }
    }
}

/// How long a parent waits for a child to stop gracefully before killing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shutdown {
    /// Run the child's stop hook, wait at most this long, then abort it.
    Timeout(Duration),
    /// Wait as long as it takes (the OTP default for supervisors, whose
    /// own children carry timeouts).
    Infinity,
}

impl Shutdown {
    pub fn timeout(self) -> Option<Duration> {
        match self {
            Shutdown::Timeout(d) => Some(d),
            Shutdown::Infinity => None,
        }
    }
}

/// Restart intensity: more than `max_restarts` restarts within `within` and the
/// supervisor gives up: it stops its children and fails to its own parent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Intensity {
    pub max_restarts: u32,
    pub within: Duration,
}

impl Intensity {
    pub const fn new(max_restarts: u32, within: Duration) -> Self {
        Self {
            max_restarts,
            within,
        }
    }
}

impl Default for Intensity {
    /// 10 restarts within 10 s.
    fn default() -> Self {
        Self::new(10, Duration::from_secs(10))
    }
}

/// Sliding window of restart times that tells when an [`Intensity`] is exceeded.
#[derive(Debug, Clone)]
pub struct RestartWindow {
    limit: Intensity,
    /// Times of the restarts still inside the window, oldest first.
    times: VecDeque<Instant>,
}

impl RestartWindow {
    pub fn new(limit: Intensity) -> Self {
        Self {
            limit,
            times: VecDeque::new(),
        }
    }

    /// Records a restart at `now`; returns false when this restart is one too many.
    pub fn record(&mut self, now: Instant) -> bool {
        while let Some(&oldest) = self.times.front() {
            if now.duration_since(oldest) >= self.limit.within {
                self.times.pop_front();
            } else {
                break;
            }
        }
        self.times.push_back(now);
        self.times.len() as u32 <= self.limit.max_restarts
    }

    pub fn clear(&mut self) {
        self.times.clear();
    }

    pub fn limit(&self) -> Intensity {
        self.limit
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_follow_the_otp_table() {
        use RestartPolicy::*;
        assert!(Permanent.restarts_after(true) && Permanent.restarts_after(false));
        assert!(Transient.restarts_after(true) && !Transient.restarts_after(false));
        assert!(!Temporary.restarts_after(true) && !Temporary.restarts_after(false));
    }

    #[test]
    fn window_allows_exactly_max_restarts_within_the_period() {
        let start = Instant::now();
        let mut w = RestartWindow::new(Intensity::new(3, Duration::from_secs(10)));
        for i in 0..3 {
            assert!(w.record(start + Duration::from_secs(i)), "restart {i}");
        }
        assert!(
            !w.record(start + Duration::from_secs(3)),
            "fourth within 10 s"
        );
    }

    #[test]
    fn restarts_older_than_the_period_no_longer_count() {
        let start = Instant::now();
        let mut w = RestartWindow::new(Intensity::new(2, Duration::from_secs(10)));
        assert!(w.record(start));
        assert!(w.record(start + Duration::from_secs(5)));
        // The first one has left the window by t = 10 s.
        assert!(w.record(start + Duration::from_secs(10)));
        assert!(!w.record(start + Duration::from_secs(11)));
    }

    #[test]
    fn zero_intensity_gives_up_on_the_first_restart() {
        let mut w = RestartWindow::new(Intensity::new(0, Duration::from_secs(1)));
        assert!(!w.record(Instant::now()));
    }
}
