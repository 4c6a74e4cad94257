//! How the runtime steers a running shard without a lock on its fast
//! path: one atomic command, read once per loop iteration; an update (a
//! reload) handed over under a mutex only when its flag says one is
//! waiting; and an eventfd that wakes the shard from its sleep at once, so
//! a drain starts refusing within a loop iteration of the signal.
//!
//! | command | the shard |
//! |---|---|
//! | `Run` | serves |
//! | `Drain` | closes its listeners (new attempts get the configured refusal) and serves what it has |
//! | `Finish` | closes what is left: FIN to every client and backend (the drain timed out) |
//! | `Stop` | leaves its loop: resets what is left, gives back what io_uring holds |
//! | `Fault` | panics (test-only fault injection: how supervision is tested) |

use std::os::fd::{AsFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Mutex;

use nix::sys::eventfd::{EfdFlags, EventFd};

use super::plan::ShardUpdate;

/// What the runtime asks of a shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Command {
    Run = 0,
    Drain = 1,
    Finish = 2,
    Stop = 3,
    Fault = 4,
}

impl Command {
    fn from_u8(v: u8) -> Self {
        match v {
            0 => Command::Run,
            1 => Command::Drain,
            2 => Command::Finish,
            3 => Command::Stop,
            _ => Command::Fault,
        }
    }
}

/// A shard's control block, shared by the runtime and the shard thread.
#[derive(Debug)]
pub struct ShardControl {
    command: AtomicU8,
    updated: AtomicBool,
    update: Mutex<Option<ShardUpdate>>,
    wake: EventFd,
}

impl ShardControl {
    pub fn new() -> std::io::Result<Self> {
        Ok(Self {
            command: AtomicU8::new(Command::Run as u8),
            updated: AtomicBool::new(false),
            update: Mutex::new(None),
            wake: EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
        })
    }

    /// The command now (one relaxed load).
    pub fn command(&self) -> Command {
        Command::from_u8(self.command.load(Ordering::Relaxed))
    }

    /// Asks for `command` and wakes the shard. Commands only move forward
    /// (a later stage is never undone by an earlier one), except `Fault`.
    pub fn set(&self, command: Command) {
        let _ = self
            .command
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                (command as u8 > now || command == Command::Fault).then_some(command as u8)
            });
        self.wake();
    }

    /// Hands the shard an update (replacing one it has not taken yet) and
    /// wakes it.
    pub fn update(&self, update: ShardUpdate) {
        *self.update.lock().expect("update lock") = Some(update);
        self.updated.store(true, Ordering::Release);
        self.wake();
    }

    /// The update waiting, if any (one relaxed load when there is none).
    pub fn take_update(&self) -> Option<ShardUpdate> {
        if !self.updated.load(Ordering::Relaxed) {
            return None;
        }
        self.updated.store(false, Ordering::Relaxed);
        self.update.lock().expect("update lock").take()
    }

    fn wake(&self) {
        let _ = self.wake.write(1);
    }

    /// Wakes the shard from its sleep without a command: something for it
    /// is waiting elsewhere (a relayed segment).
    pub fn nudge(&self) {
        self.wake();
    }

    /// Readable while a wake-up is pending; the shard sleeps on it.
    pub fn wake_fd(&self) -> BorrowedFd<'_> {
        self.wake.as_fd()
    }

    /// Consumes pending wake-ups (after the shard woke).
    pub fn woken(&self) {
        let _ = self.wake.read();
    }
}
