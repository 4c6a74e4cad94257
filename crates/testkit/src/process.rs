//! Child processes of a test (lastack, nginx, tools), started in a
//! namespace and ended by PID.

use std::process::{Child, Command, Output, Stdio};

use crate::netns::Netns;

/// Starts `exe args...` inside `ns` (stderr captured).
pub fn spawn_in(ns: &Netns, exe: &str, args: &[&str]) -> Child {
    Command::new("ip")
        .args(["netns", "exec", &ns.name, exe])
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {exe}: {e}"))
}

/// SIGTERM to a child we started (by PID), then its output.
pub fn terminate(child: Child) -> Output {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal our child");
    child.wait_with_output().expect("wait for our child")
}

/// SIGTERM to a child we started (by PID) and wait; errors ignored (for
/// drops).
pub fn terminate_quietly(child: &mut Child) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    );
    let _ = child.wait();
}

/// A child that is ended (SIGTERM, by PID) when the guard drops: a test
/// that fails half-way leaves no process behind.
pub struct Guard(Option<Child>);

impl Guard {
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    pub fn id(&self) -> u32 {
        self.0.as_ref().expect("running").id()
    }

    /// SIGTERM, then the child's output.
    pub fn terminate(mut self) -> Output {
        terminate(self.0.take().expect("running"))
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            terminate_quietly(child);
        }
    }
}
