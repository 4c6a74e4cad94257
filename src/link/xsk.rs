//! AF_XDP sockets (xsk-rs over libxdp), one per rx queue.
//!
//! This is the binding step only: a UMEM and a socket bound to
//! `(interface, queue)` in copy or zero-copy mode, without libxdp's default
//! XDP program (ours, [`super::xdp::Steering`], puts the socket in its map).
//! The batched ring driver (fill, rx, tx, completion) builds on it.

use std::ffi::CString;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, BorrowedFd};

pub use crate::config::BindMode;
use xsk_rs::config::{BindFlags, Interface, LibxdpFlags, SocketConfig, UmemConfig};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

/// Why a socket could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("AF_XDP on {interface} queue {queue}: {reason}")]
pub struct XskError {
    interface: String,
    queue: u32,
    reason: String,
}

/// An AF_XDP socket bound to one rx queue, with its UMEM and four rings.
pub struct XskSocket {
    // Field order is drop order: the queues hold the socket, which holds the
    // UMEM; the UMEM is unmapped last.
    tx: TxQueue,
    rx: RxQueue,
    fill: FillQueue,
    completion: CompQueue,
    frames: Vec<FrameDesc>,
    umem: Umem,
    queue: u32,
}

impl std::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSocket")
            .field("queue", &self.queue)
            .field("frames", &self.frames.len())
            .finish_non_exhaustive()
    }
}

impl XskSocket {
    /// Creates a UMEM of `frame_count` frames and binds a socket to
    /// `(interface, queue)`. Binding needs root and an existing interface in
    /// the calling thread's network namespace.
    pub fn bind(
        interface: &str,
        queue: u32,
        frame_count: NonZeroU32,
        mode: BindMode,
    ) -> Result<Self, XskError> {
        let error = |reason: String| XskError {
            interface: interface.into(),
            queue,
            reason,
        };
        let umem_config = UmemConfig::default();
        let (umem, frames) = Umem::new(umem_config, frame_count, false)
            .map_err(|e| error(format!("creating UMEM of {frame_count} frames: {e}")))?;
        let bind_flags = match mode {
            BindMode::Copy => BindFlags::XDP_COPY,
            BindMode::ZeroCopy => BindFlags::XDP_ZEROCOPY,
        } | BindFlags::XDP_USE_NEED_WAKEUP;
        let socket_config = SocketConfig::builder()
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(bind_flags)
            .build();
        let name = CString::new(interface).map_err(|_| error("interface name has a NUL".into()))?;
        // Safety: this UMEM is new and bound to no (interface, queue) pair
        // yet, so the shared-UMEM precondition of `Socket::new` does not
        // apply; we also set XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD as it asks.
        let (tx, rx, rings) =
            unsafe { Socket::new(socket_config, &umem, &Interface::new(name), queue) }
                .map_err(|e| error(format!("binding: {e}")))?;
        let (fill, completion) =
            rings.ok_or_else(|| error("the UMEM came without fill/completion rings".into()))?;
        Ok(Self {
            tx,
            rx,
            fill,
            completion,
            frames,
            umem,
            queue,
        })
    }

    /// The socket's file descriptor, for the XSKMAP and for poll().
    pub fn fd(&self) -> BorrowedFd<'_> {
        // Safety: the fd belongs to the socket that `self.rx` keeps open for
        // as long as `self` lives, which bounds the borrow.
        unsafe { BorrowedFd::borrow_raw(self.rx.fd().as_raw_fd()) }
    }

    /// The rx queue this socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// Number of UMEM frames.
    pub fn frame_count(&self) -> usize {
        self.frames.len()
    }

    /// The fill, rx, tx and completion rings and the UMEM, for the ring
    /// driver that moves frames between them.
    pub fn rings(
        &mut self,
    ) -> (
        &mut FillQueue,
        &mut RxQueue,
        &mut TxQueue,
        &mut CompQueue,
        &Umem,
    ) {
        (
            &mut self.fill,
            &mut self.rx,
            &mut self.tx,
            &mut self.completion,
            &self.umem,
        )
    }
}
