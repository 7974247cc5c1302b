//! A circuit breaker per backend: after `failures` consecutive failures the backend
//! is skipped for `cooldown_secs`; then one trial request goes through (half-open);
//! its success closes the circuit, its failure opens it again.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::BreakerConfig;

#[derive(Debug, Default)]
struct State {
    consecutive: u32,
    open_until: Option<Instant>,
    trial: bool,
}

/// Breaker state, shared by all requests to one backend.
#[derive(Debug)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: Mutex<State>,
}

/// What the breaker says about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// Closed: go.
    Yes,
    /// Half-open: this request is the trial.
    Trial,
    /// Open: skip the backend.
    No,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Self {
        Self {
            cfg,
            state: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// May a request go to the backend at `now`?
    pub fn admit(&self, now: Instant) -> Admit {
        if self.cfg.failures == 0 {
            return Admit::Yes;
        }
        let mut s = self.lock();
        match s.open_until {
            None => Admit::Yes,
            Some(t) if now < t => Admit::No,
            Some(_) if s.trial => Admit::No,
            Some(_) => {
                s.trial = true;
                Admit::Trial
            }
        }
    }

    /// The backend answered.
    pub fn success(&self) {
        let mut s = self.lock();
        *s = State::default();
    }

    /// The backend failed at `now`.
    pub fn failure(&self, now: Instant) {
        if self.cfg.failures == 0 {
            return;
        }
        let mut s = self.lock();
        s.consecutive += 1;
        if s.trial || s.consecutive >= self.cfg.failures {
            if s.open_until.is_none() || s.trial {
                tracing::warn!(
                    failures = s.consecutive,
                    cooldown_secs = self.cfg.cooldown_secs,
                    "circuit opened"
                );
            }
            s.open_until = Some(now + Duration::from_secs_f64(self.cfg.cooldown_secs.max(0.0)));
            s.trial = false;
        }
    }

    /// A trial request ended without telling anything about the backend's health
    /// (e.g. the client's own error): let the next request be the trial.
    pub fn release_trial(&self) {
        self.lock().trial = false;
    }

    /// `closed`, `open` or `half-open` at `now`.
    pub fn state(&self, now: Instant) -> &'static str {
        let s = self.lock();
        match s.open_until {
            None => "closed",
            Some(t) if now < t => "open",
            Some(_) => "half-open",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_consecutive_failures_then_half_opens() {
        let b = Breaker::new(BreakerConfig {
            failures: 3,
            cooldown_secs: 10.0,
        });
        let t0 = Instant::now();
        b.failure(t0);
        b.failure(t0);
        b.success(); // resets the count
        b.failure(t0);
        b.failure(t0);
        assert_eq!(b.admit(t0), Admit::Yes);
        b.failure(t0);
        assert_eq!(b.admit(t0), Admit::No);
        assert_eq!(b.state(t0), "open");
        let later = t0 + Duration::from_secs(11);
        assert_eq!(b.state(later), "half-open");
        assert_eq!(b.admit(later), Admit::Trial);
        assert_eq!(b.admit(later), Admit::No, "one trial at a time");
        b.failure(later);
        assert_eq!(
            b.admit(later + Duration::from_secs(5)),
            Admit::No,
            "reopened"
        );
        let much_later = later + Duration::from_secs(11);
        assert_eq!(b.admit(much_later), Admit::Trial);
        b.success();
        assert_eq!(b.admit(much_later), Admit::Yes);
        assert_eq!(b.state(much_later), "closed");
    }

    #[test]
    fn released_trial_lets_another_through_and_zero_disables() {
        let b = Breaker::new(BreakerConfig {
            failures: 1,
            cooldown_secs: 0.0,
        });
        let t = Instant::now();
        b.failure(t);
        let t1 = t + Duration::from_millis(1);
        assert_eq!(b.admit(t1), Admit::Trial);
        b.release_trial();
        assert_eq!(b.admit(t1), Admit::Trial);
        let off = Breaker::new(BreakerConfig {
            failures: 0,
            cooldown_secs: 10.0,
        });
        for _ in 0..10 {
            off.failure(t);
        }
        assert_eq!(off.admit(t), Admit::Yes);
    }
}
