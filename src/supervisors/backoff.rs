//! Restart backoff: exponential, jittered, capped, and reset after a quiet period.
//!
//! A pure value type: it computes delays, it never sleeps. The supervisor owns the
//! timers, which lets tests check the schedule with a seeded random source.

use std::time::Duration;

/// How long a supervisor waits before restarting a crashed child.
///
/// The n-th consecutive restart (counting from 0) waits
/// `min(max, initial * multiplier^n)`, shortened by up to `jitter` of itself so
/// that many children crashing together do not restart in lock-step. A child that
/// has run `reset_after` without crashing starts again from `initial`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Delay before the first restart of a crash series.
    initial: Duration,
    /// Upper bound of every delay, jitter included.
    max: Duration,
    /// Growth per consecutive restart; at least 1.
    multiplier: f64,
    /// Fraction (0..=1) of a delay that randomness may take off.
    jitter: f64,
    /// Uptime after which a child's crash series is forgotten.
    reset_after: Duration,
}

/// Why a [`Backoff`] could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BackoffError {
    #[error("backoff initial delay {initial:?} is longer than its cap {max:?}")]
    InitialAboveMax { initial: Duration, max: Duration },
    #[error("backoff multiplier must be a finite number >= 1, got {0}")]
    Multiplier(f64),
    #[error("backoff jitter must be within 0..=1, got {0}")]
    Jitter(f64),
}

impl Backoff {
    /// Builds a validated backoff.
    pub fn new(
        initial: Duration,
        max: Duration,
        multiplier: f64,
        jitter: f64,
        reset_after: Duration,
    ) -> Result<Self, BackoffError> {
        if initial > max {
            return Err(BackoffError::InitialAboveMax { initial, max });
        }
        if !multiplier.is_finite() || multiplier < 1.0 {
            return Err(BackoffError::Multiplier(multiplier));
        }
        if !(0.0..=1.0).contains(&jitter) {
            return Err(BackoffError::Jitter(jitter));
        }
        Ok(Self {
            initial,
            max,
            multiplier,
            jitter,
            reset_after,
        })
    }

    /// A backoff for a retry loop that counts its own attempts (a reconnect, a
    /// claim, a full mailbox): `initial` doubling to `max`, shortened by up to
    /// `jitter`, never reset by time (the loop's series ends when it succeeds).
    /// `const`, so a bad constant fails the build instead of a retry.
    pub const fn doubling(initial: Duration, max: Duration, jitter: f64) -> Self {
        assert!(
            initial.as_nanos() <= max.as_nanos(),
            "backoff initial delay is longer than its cap"
        );
        assert!(
            jitter >= 0.0 && jitter <= 1.0,
            "backoff jitter must be within 0..=1"
        );
        Self {
            initial,
            max,
            multiplier: 2.0,
            jitter,
            reset_after: Duration::MAX,
        }
    }

    /// Restart at once, every time (plain OTP behaviour).
    pub const fn none() -> Self {
        Self {
            initial: Duration::ZERO,
            max: Duration::ZERO,
            multiplier: 1.0,
            jitter: 0.0,
            reset_after: Duration::ZERO,
        }
    }

    /// The delay before restart number `attempt` (0-based) of a crash series.
    /// `unit` is a random number in `[0, 1)`; pass `0.0` for the un-jittered value.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let exp = self.multiplier.powi(attempt.min(64) as i32);
        let base = self.initial.as_secs_f64() * exp;
        let capped = base.min(self.max.as_secs_f64());
        let jittered = capped * (1.0 - self.jitter * unit.clamp(0.0, 1.0));
        Duration::from_secs_f64(jittered.max(0.0)).min(self.max)
    }

    /// Uptime after which a crash series starts over.
    pub fn reset_after(&self) -> Duration {
        self.reset_after
    }

    pub fn initial(&self) -> Duration {
        self.initial
    }

    pub fn max(&self) -> Duration {
        self.max
    }
}

impl Default for Backoff {
    /// 10 ms doubling to 5 s, 20 % jitter, forgotten after 30 s of calm.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(10),
            max: Duration::from_secs(5),
            multiplier: 2.0,
            jitter: 0.2,
            reset_after: Duration::from_secs(30),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn delays_grow_geometrically_then_stay_at_the_cap() {
        let b = Backoff::new(ms(100), ms(1000), 2.0, 0.0, ms(5000)).unwrap();
        let got: Vec<_> = (0..7).map(|n| b.delay(n, 0.5)).collect();
        assert_eq!(
            got,
            vec![
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000),
                ms(1000)
            ]
        );
    }

    #[test]
    fn jitter_only_shortens_and_never_exceeds_the_cap() {
        let b = Backoff::new(ms(100), ms(1000), 2.0, 0.5, ms(5000)).unwrap();
        let mut rng = fastrand::Rng::with_seed(7);
        for attempt in 0..20 {
            let full = b.delay(attempt, 0.0);
            let d = b.delay(attempt, rng.f64());
            assert!(d <= full, "{d:?} > {full:?}");
            assert!(d >= full / 2, "{d:?} < half of {full:?}");
            assert!(d <= ms(1000));
        }
    }

    #[test]
    fn huge_attempt_counts_do_not_overflow() {
        let b = Backoff::default();
        assert_eq!(b.delay(u32::MAX, 0.0), b.max());
    }

    #[test]
    fn invalid_parameters_are_rejected_with_a_reason() {
        assert_eq!(
            Backoff::new(ms(2), ms(1), 2.0, 0.1, ms(1)),
            Err(BackoffError::InitialAboveMax {
                initial: ms(2),
                max: ms(1)
            })
        );
        assert_eq!(
            Backoff::new(ms(1), ms(2), 0.5, 0.1, ms(1)),
            Err(BackoffError::Multiplier(0.5))
        );
        assert!(Backoff::new(ms(1), ms(2), f64::NAN, 0.1, ms(1)).is_err());
        assert_eq!(
            Backoff::new(ms(1), ms(2), 2.0, 1.5, ms(1)),
            Err(BackoffError::Jitter(1.5))
        );
    }

    #[test]
    fn a_doubling_backoff_is_a_validated_one_with_multiplier_two_and_no_reset() {
        const B: Backoff =
            Backoff::doubling(Duration::from_millis(50), Duration::from_secs(2), 0.5);
        assert_eq!(
            Ok(B),
            Backoff::new(ms(50), ms(2000), 2.0, 0.5, Duration::MAX)
        );
        let got: Vec<_> = (0..8).map(|n| B.delay(n, 0.0)).collect();
        assert_eq!(
            got,
            [50, 100, 200, 400, 800, 1600, 2000, 2000].map(ms).to_vec()
        );
    }

    #[test]
    fn no_backoff_means_immediate_restarts() {
        let b = Backoff::none();
        assert_eq!(b.delay(0, 0.9), Duration::ZERO);
        assert_eq!(b.delay(10, 0.9), Duration::ZERO);
    }
}
