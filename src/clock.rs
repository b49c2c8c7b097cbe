//! "Now" comes from a clock so that tests move time instead of sleeping.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, SubsecRound, Utc};

pub trait Clock: Send + Sync {
    /// The current instant, truncated to whole seconds (DESIGN: instants are whole seconds).
    fn now(&self) -> DateTime<Utc>;
    /// The test clock, when this is one.
    fn as_test(&self) -> Option<&TestClock> {
        None
    }
}

pub type SharedClock = Arc<dyn Clock>;

#[derive(Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now().trunc_subsecs(0)
    }
}

/// A clock that stands still until an admin moves it forward.
#[derive(Debug)]
pub struct TestClock {
    now: RwLock<DateTime<Utc>>,
}

impl TestClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        Self {
            now: RwLock::new(start.trunc_subsecs(0)),
        }
    }

    /// Moves the clock to `to`; time never goes backwards.
    pub fn advance_to(&self, to: DateTime<Utc>) -> Result<DateTime<Utc>, DateTime<Utc>> {
        let mut now = self.now.write().unwrap_or_else(|p| p.into_inner());
        let to = to.trunc_subsecs(0);
        if to < *now {
            return Err(*now);
        }
        *now = to;
        Ok(to)
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.read().unwrap_or_else(|p| p.into_inner())
    }

    fn as_test(&self) -> Option<&TestClock> {
        Some(self)
    }
}
