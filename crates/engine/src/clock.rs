//! The engine's time: what approval expiry, repair back-off and lease checks compare
//! against. The system clock in production; a [`ManualClock`] in tests, moved by hand, so
//! that behaviour about time is tested without waiting for it.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// Now, in Unix milliseconds (the unit of every time the store keeps).
pub trait Clock: Send + Sync + std::fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        launchway_store::now_ms()
    }
}

/// A clock that moves only when told: it starts at the wall clock's now (so that it agrees
/// with times the store writes) and [`ManualClock::advance`] moves it on.
#[derive(Debug)]
pub struct ManualClock {
    now: AtomicI64,
}

impl ManualClock {
    pub fn starting_now() -> ManualClock {
        ManualClock { now: AtomicI64::new(launchway_store::now_ms()) }
    }

    pub fn advance(&self, by: Duration) {
        self.now.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}
