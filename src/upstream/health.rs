//! A backend's health as checks report it: `rise` consecutive successes
//! bring a backend up, `fall` consecutive failures take it down (active
//! checks, HAProxy's model). A failed connect from live traffic counts as a
//! failure too (passive checks), so a dead backend goes down without
//! waiting for its next probe. A draining backend keeps its connections
//! but gets no new ones.

/// Health of one backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Health {
    rise: u32,
    fall: u32,
    up: bool,
    draining: bool,
    /// Consecutive results pointing the other way than `up`.
    streak: u32,
}

/// A change the caller should log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    WentUp,
    WentDown,
}

impl Health {
    /// A backend starts up (it is in the config; traffic or checks will
    /// say otherwise); `rise` and `fall` are at least 1.
    pub fn new(rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            up: true,
            draining: false,
            streak: 0,
        }
    }

    /// True if the backend may get new connections.
    pub fn accepts_new(&self) -> bool {
        self.up && !self.draining
    }

    pub fn is_up(&self) -> bool {
        self.up
    }

    /// Consecutive results pointing the other way than the state.
    pub fn streak(&self) -> u32 {
        self.streak
    }

    /// The same backend's health under new thresholds (a reload): up or
    /// down as it was, its streak kept.
    pub fn with_thresholds(self, rise: u32, fall: u32) -> Self {
        Self {
            rise: rise.max(1),
            fall: fall.max(1),
            ..self
        }
    }

    /// Draining: existing connections finish, no new ones come.
    pub fn set_draining(&mut self, draining: bool) {
        self.draining = draining;
    }

    /// One check or connect result.
    pub fn record(&mut self, ok: bool) -> Option<Transition> {
        if ok == self.up {
            self.streak = 0;
            return None;
        }
        self.streak += 1;
        let threshold = if self.up { self.fall } else { self.rise };
        if self.streak < threshold {
            return None;
        }
        self.up = ok;
        self.streak = 0;
        Some(if ok {
            Transition::WentUp
        } else {
            Transition::WentDown
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fall_failures_in_a_row_take_a_backend_down() {
        let mut h = Health::new(2, 3);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(true), None, "a success resets the streak");
        assert_eq!(h.record(false), None);
        assert_eq!(h.record(false), None);
        assert!(h.is_up());
        assert_eq!(h.record(false), Some(Transition::WentDown));
        assert!(!h.accepts_new());
    }

    #[test]
    fn rise_successes_in_a_row_bring_it_back() {
        let mut h = Health::new(2, 1);
        assert_eq!(h.record(false), Some(Transition::WentDown));
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(false), None, "still down; the streak restarts");
        assert_eq!(h.record(true), None);
        assert_eq!(h.record(true), Some(Transition::WentUp));
        assert!(h.accepts_new());
    }

    #[test]
    fn a_draining_backend_stays_up_but_takes_nothing_new() {
        let mut h = Health::new(1, 1);
        h.set_draining(true);
        assert!(h.is_up());
        assert!(!h.accepts_new());
        h.set_draining(false);
        assert!(h.accepts_new());
    }
}
