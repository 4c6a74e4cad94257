//! The XDP steering program: loading, attaching, its maps and counters.
//!
//! The program itself is `bpf/steer.bpf.c`; `build.rs` compiles it and
//! generates the skeleton included below. [`Steering`] owns one loaded copy.
//! It is attached with a bpf_link ([`Steering::attach`]), so the program
//! leaves the interface when the link's file descriptor closes, which also
//! happens when the process dies (unlike a netlink attach, which survives
//! `kill -9`).

use std::fmt;
use std::mem::MaybeUninit;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use libbpf_rs::libbpf_sys;
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, OpenObject};

pub use crate::config::XdpMode;

#[allow(clippy::all, unsafe_op_in_unsafe_fn, dead_code, missing_docs)]
mod skel {
    include!(concat!(env!("OUT_DIR"), "/steer.skel.rs"));
}
use skel::{SteerSkel, SteerSkelBuilder};

/// Mirror of `enum steer_outcome` in `bpf/steer.h`, in slot order.
const OUTCOMES: usize = 5;

/// Why an XDP operation failed, with what we were doing.
#[derive(Debug, thiserror::Error)]
pub enum XdpError {
    #[error("{context}: {source:#}")]
    Bpf {
        context: String,
        source: libbpf_rs::Error,
    },
    #[error("{context}: {source}")]
    Os {
        context: String,
        source: std::io::Error,
    },
}

impl XdpError {
    fn new(context: impl Into<String>, source: std::io::Error) -> Self {
        Self::Os {
            context: context.into(),
            source,
        }
    }

    fn from_bpf(context: impl Into<String>, source: libbpf_rs::Error) -> Self {
        Self::Bpf {
            context: context.into(),
            source,
        }
    }
}

/// The action an XDP program returned (`enum xdp_action` in `linux/bpf.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpAction {
    Aborted,
    Drop,
    Pass,
    Tx,
    Redirect,
    Unknown(u32),
}

impl From<u32> for XdpAction {
    fn from(value: u32) -> Self {
        match value {
            0 => Self::Aborted,
            1 => Self::Drop,
            2 => Self::Pass,
            3 => Self::Tx,
            4 => Self::Redirect,
            other => Self::Unknown(other),
        }
    }
}

/// Frames per outcome of the steering program, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SteerCounters {
    /// Listener hit and handed to the AF_XDP socket of the receiving queue.
    pub redirected: u64,
    /// Not for a listener (ARP, ICMP, other ports or addresses): to the kernel.
    pub passed: u64,
    /// Listener hit but no AF_XDP socket on that queue: to the kernel.
    pub no_socket: u64,
    /// Truncated or invalid headers: to the kernel, which drops them.
    pub malformed: u64,
    /// IPv4 TCP fragments: to the kernel (our stack refuses fragments).
    pub fragment: u64,
}

impl SteerCounters {
    fn from_slots(slots: [u64; OUTCOMES]) -> Self {
        let [redirected, passed, no_socket, malformed, fragment] = slots;
        Self {
            redirected,
            passed,
            no_socket,
            malformed,
            fragment,
        }
    }
}

/// Key of the `listeners` map: `struct listener_key` in `bpf/steer.h`.
fn listener_key(addr: Ipv4Addr, port: u16) -> [u8; 8] {
    let mut key = [0u8; 8];
    key[..4].copy_from_slice(&addr.octets()); // network byte order
    key[4..6].copy_from_slice(&port.to_be_bytes());
    key
}

/// One loaded copy of the steering program and its maps.
pub struct Steering {
    skel: SteerSkel<'static>,
    attachment: Option<Attachment>,
}

/// An attached program: the bpf_link fd and where it is attached.
struct Attachment {
    link: OwnedFd,
    ifindex: u32,
    mode: XdpMode,
}

impl fmt::Debug for Steering {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Steering")
            .field("ifindex", &self.attachment.as_ref().map(|a| a.ifindex))
            .field("mode", &self.attachment.as_ref().map(|a| a.mode))
            .finish_non_exhaustive()
    }
}

impl Steering {
    /// Opens the embedded object and loads it into the kernel (needs
    /// CAP_BPF/CAP_NET_ADMIN, i.e. root). Nothing is attached yet.
    pub fn load() -> Result<Self, XdpError> {
        // The skeleton borrows its object slot for its whole life. One small
        // allocation per loaded program is leaked to make that 'static; the
        // object inside it is still freed when the skeleton drops.
        let slot: &'static mut MaybeUninit<OpenObject> = Box::leak(Box::new(MaybeUninit::uninit()));
        let open = SteerSkelBuilder::default()
            .open(slot)
            .map_err(|e| XdpError::from_bpf("opening the XDP steering object", e))?;
        let skel = open.load().map_err(|e| {
            XdpError::from_bpf("loading the XDP steering program (are you root?)", e)
        })?;
        Ok(Self {
            skel,
            attachment: None,
        })
    }

    /// Steers TCP to `addr:port` into the AF_XDP sockets.
    pub fn add_listener(&self, addr: Ipv4Addr, port: u16) -> Result<(), XdpError> {
        self.skel
            .maps
            .listeners
            .update(&listener_key(addr, port), &[1], MapFlags::ANY)
            .map_err(|e| XdpError::from_bpf(format!("adding listener {addr}:{port}"), e))
    }

    /// Stops steering `addr:port`; its packets go to the kernel again.
    pub fn remove_listener(&self, addr: Ipv4Addr, port: u16) -> Result<(), XdpError> {
        self.skel
            .maps
            .listeners
            .delete(&listener_key(addr, port))
            .map_err(|e| XdpError::from_bpf(format!("removing listener {addr}:{port}"), e))
    }

    /// Puts the AF_XDP socket `xsk` in the slot of rx queue `queue`.
    pub fn register_socket(&self, queue: u32, xsk: BorrowedFd<'_>) -> Result<(), XdpError> {
        let fd = xsk.as_raw_fd() as u32;
        self.skel
            .maps
            .xsks
            .update(&queue.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .map_err(|e| {
                XdpError::from_bpf(format!("registering AF_XDP socket for queue {queue}"), e)
            })
    }

    /// Empties the slot of rx queue `queue`.
    pub fn unregister_socket(&self, queue: u32) -> Result<(), XdpError> {
        self.skel
            .maps
            .xsks
            .delete(&queue.to_ne_bytes())
            .map_err(|e| XdpError::from_bpf(format!("unregistering queue {queue}"), e))
    }

    /// Attaches the program to interface `ifindex` with a bpf_link.
    pub fn attach(&mut self, ifindex: u32, mode: XdpMode) -> Result<(), XdpError> {
        if let Some(existing) = &self.attachment {
            return Err(XdpError::new(
                format!("attaching XDP to ifindex {ifindex}"),
                std::io::Error::other(format!("already attached to ifindex {}", existing.ifindex)),
            ));
        }
        let flags = match mode {
            XdpMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            XdpMode::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
        };
        // Safety: `bpf_link_create_opts` is a plain C struct for which all
        // zero bytes are a valid value; `sz` is set as libbpf requires.
        let mut opts: libbpf_sys::bpf_link_create_opts = unsafe { std::mem::zeroed() };
        opts.sz = std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _;
        opts.flags = flags;
        let prog_fd = self.skel.progs.steer.as_fd().as_raw_fd();
        // Safety: `prog_fd` is a live program fd borrowed from the skeleton
        // for the duration of the call, and `opts` outlives the call.
        let fd = unsafe {
            libbpf_sys::bpf_link_create(prog_fd, ifindex as i32, libbpf_sys::BPF_XDP, &opts)
        };
        if fd < 0 {
            return Err(XdpError::new(
                format!("attaching XDP ({mode:?} mode) to ifindex {ifindex}"),
                std::io::Error::from_raw_os_error(-fd),
            ));
        }
        // Safety: `bpf_link_create` returned a new fd that nothing else owns.
        let link = unsafe { OwnedFd::from_raw_fd(fd) };
        self.attachment = Some(Attachment {
            link,
            ifindex,
            mode,
        });
        Ok(())
    }

    /// Detaches the program (closing the link). Dropping `Steering` does too.
    pub fn detach(&mut self) {
        if let Some(attachment) = self.attachment.take() {
            drop(attachment.link);
        }
    }

    /// Frames per outcome, summed over all CPUs.
    pub fn counters(&self) -> Result<SteerCounters, XdpError> {
        let mut slots = [0u64; OUTCOMES];
        for (index, slot) in slots.iter_mut().enumerate() {
            let per_cpu = self
                .skel
                .maps
                .counters
                .lookup_percpu(&(index as u32).to_ne_bytes(), MapFlags::ANY)
                .map_err(|e| XdpError::from_bpf("reading XDP counters", e))?
                .unwrap_or_default();
            *slot = per_cpu
                .iter()
                .filter_map(|bytes| bytes.get(..8))
                .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
                .sum();
        }
        Ok(SteerCounters::from_slots(slots))
    }

    /// Runs the program once on `frame` with `BPF_PROG_TEST_RUN` and returns
    /// its action (the redirect itself is not performed). Counters count it.
    pub fn test_run(&self, frame: &[u8]) -> Result<XdpAction, XdpError> {
        let input = libbpf_rs::ProgramInput {
            data_in: Some(frame),
            ..Default::default()
        };
        let output = self
            .skel
            .progs
            .steer
            .test_run(input)
            .map_err(|e| XdpError::from_bpf("BPF_PROG_TEST_RUN of the steering program", e))?;
        Ok(output.return_value.into())
    }
}
