//! AF_XDP sockets (xsk-rs over libxdp), one per rx queue.
//!
//! A UMEM and a socket bound to `(interface, queue)` in copy or zero-copy
//! mode, without libxdp's default XDP program (ours,
//! [`super::xdp::Steering`], puts the socket in its map), and the batched
//! ring driver: fill, rx, tx and completion rings moved in batches, with
//! need_wakeup honoured.
//!
//! # Frame accounting
//! Every UMEM frame is in exactly one place: our free list, the fill ring
//! (lent to the kernel for rx), held by the caller (an rx frame being read
//! or a tx frame being written), or the tx ring (lent to the kernel until
//! its completion). [`FrameCounts`] exposes the places and a debug check
//! asserts they add up after every batch. A frame lent to the kernel is
//! never touched until the ring hands it back.

use std::ffi::CString;
use std::num::NonZeroU32;
use std::os::fd::{AsRawFd, BorrowedFd};

pub use crate::config::BindMode;
use xsk_rs::config::{BindFlags, FrameSize, Interface, LibxdpFlags, SocketConfig, UmemConfig};
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
    /// Frames owned by us and idle.
    free: Vec<FrameDesc>,
    umem: Umem,
    queue: u32,
    total: usize,
    in_fill: usize,
    in_tx: usize,
    held: usize,
    /// Scratch descriptors for ring batches (kept to avoid allocating).
    scratch: Vec<FrameDesc>,
    /// A descriptor of this UMEM to fill `scratch` slots with before a
    /// ring overwrites them; never lent to the kernel through it.
    placeholder: FrameDesc,
    frame_len: usize,
}

/// Where the UMEM frames are. `free + fill + held + tx == total`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameCounts {
    pub total: usize,
    pub free: usize,
    pub fill: usize,
    pub held: usize,
    pub tx: usize,
}

/// Frames moved per ring operation at most.
pub const BATCH: usize = 64;

impl std::fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("XskSocket")
            .field("queue", &self.queue)
            .field("frames", &self.counts())
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
        Self::bind_with_frame_size(interface, queue, frame_count, 4096, mode)
    }

    /// Like [`bind`](Self::bind) with UMEM frames of `frame_size` bytes
    /// (2048 or 4096).
    pub fn bind_with_frame_size(
        interface: &str,
        queue: u32,
        frame_count: NonZeroU32,
        frame_size: u32,
        mode: BindMode,
    ) -> Result<Self, XskError> {
        let error = |reason: String| XskError {
            interface: interface.into(),
            queue,
            reason,
        };
        let size = FrameSize::new(frame_size).map_err(|e| error(format!("frame size: {e}")))?;
        let umem_config = UmemConfig::builder()
            .frame_size(size)
            .build()
            .map_err(|e| error(format!("UMEM config: {e}")))?;
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
        let total = frames.len();
        let placeholder = frames[0];
        let mut socket = Self {
            tx,
            rx,
            fill,
            completion,
            free: frames,
            umem,
            queue,
            total,
            in_fill: 0,
            in_tx: 0,
            held: 0,
            scratch: Vec::with_capacity(BATCH),
            placeholder,
            frame_len: 0,
        };
        // The data segment's size, as the UMEM lays frames out.
        let mut probe = socket.free[0];
        socket.held += 1;
        socket.write_frame(&mut probe, |buf| buf.len());
        socket.frame_len = probe.lengths().data();
        socket.free[0] = probe;
        socket.held -= 1;
        socket.refill();
        Ok(socket)
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
        self.total
    }

    /// Bytes a frame can hold.
    pub fn frame_len(&self) -> usize {
        self.frame_len
    }

    /// Where the frames are now.
    pub fn counts(&self) -> FrameCounts {
        FrameCounts {
            total: self.total,
            free: self.free.len(),
            fill: self.in_fill,
            held: self.held,
            tx: self.in_tx,
        }
    }

    fn check_accounting(&self) {
        debug_assert_eq!(
            self.free.len() + self.in_fill + self.held + self.in_tx,
            self.total,
            "UMEM frame accounting: {:?}",
            self.counts()
        );
    }

    /// Lends free frames to the kernel for receiving, keeping `reserve`
    /// free for transmission.
    pub fn refill_keeping(&mut self, reserve: usize) {
        let want = self.free.len().saturating_sub(reserve);
        if want == 0 {
            return;
        }
        let room = self.fill.nb_free(want as u32) as usize;
        let n = room.min(want);
        if n == 0 {
            return;
        }
        let start = self.free.len() - n;
        // Safety: these descriptors are ours (on the free list, so neither
        // ring holds them) and belong to this socket's UMEM; after produce
        // we no longer touch them until the rx ring returns them.
        let produced = unsafe { self.fill.produce(&self.free[start..]) };
        self.free.truncate(self.free.len() - produced);
        self.in_fill += produced;
        if self.fill.needs_wakeup() {
            let _ = self.fill.wakeup(self.rx.fd_mut(), 0);
        }
        self.check_accounting();
    }

    /// Lends half the free frames to the fill ring (the other half stay
    /// for transmission).
    pub fn refill(&mut self) {
        self.refill_keeping(self.total / 2);
    }

    /// Takes up to [`BATCH`] received frames into `out` (appended); each
    /// must go back with [`release`](Self::release).
    pub fn receive(&mut self, out: &mut Vec<FrameDesc>) -> usize {
        self.scratch.clear();
        self.scratch.resize(BATCH, self.placeholder);
        // Safety: the rx ring only hands back frames of this UMEM that we
        // lent through the fill ring; from here we hold them.
        let n = unsafe { self.rx.consume(&mut self.scratch) };
        out.extend_from_slice(&self.scratch[..n]);
        self.in_fill -= n;
        self.held += n;
        self.check_accounting();
        n
    }

    /// The bytes of a frame we hold (received, or being written).
    pub fn frame(&self, desc: &FrameDesc) -> &[u8] {
        // Safety: `desc` is a frame of this UMEM that we hold: the kernel
        // does not own it (it is on neither the fill nor the tx ring), and
        // the shared borrow of `self` keeps our own writers away.
        unsafe { self.umem.data(desc) }.contents()
    }

    /// Starts loading the head of a received frame (its headers) into the
    /// cache. In copy mode the kernel wrote it on the sender's CPU, so the
    /// first read misses; asked for a batch before parsing, the misses
    /// overlap instead of stalling one after another.
    #[inline]
    pub fn prefetch(&self, desc: &FrameDesc) {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            let head = self.frame(desc).as_ptr();
            // Safety: a prefetch is a hint that reads nothing the program
            // sees and cannot fault; `head` points into the mapped UMEM.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(head.cast()) };
        }
        #[cfg(not(target_arch = "x86_64"))]
        let _ = desc;
    }

    /// Gives a held frame back to the free list.
    pub fn release(&mut self, desc: FrameDesc) {
        self.held -= 1;
        self.free.push(desc);
    }

    /// Takes a free frame for transmission, if any.
    pub fn alloc_tx(&mut self) -> Option<FrameDesc> {
        let desc = self.free.pop()?;
        self.held += 1;
        Some(desc)
    }

    /// Writes a frame we hold: `fill` gets the whole frame buffer and
    /// returns the length to send.
    pub fn write_frame(&mut self, desc: &mut FrameDesc, fill: impl FnOnce(&mut [u8]) -> usize) {
        // Safety: `desc` is a frame of this UMEM that we hold exclusively
        // (allocated by `alloc_tx`, on no ring), and `&mut self` excludes
        // every other access for the duration.
        let mut data = unsafe { self.umem.data_mut(desc) };
        let capacity = {
            let mut cursor = data.cursor();
            let capacity = cursor.buf_len();
            cursor.set_pos(capacity);
            capacity
        };
        let len = fill(&mut data.contents_mut()[..capacity]).min(capacity);
        data.cursor().set_pos(len);
    }

    /// Queues held, written frames for transmission and kicks the kernel
    /// if it sleeps. Frames that do not fit the ring stay in `frames` (the
    /// count sent is returned and those are removed from the front).
    pub fn transmit(&mut self, frames: &mut Vec<FrameDesc>) -> usize {
        if frames.is_empty() {
            return 0;
        }
        // Safety: every descriptor is a frame of this UMEM we hold and have
        // written; after produce we do not touch it until it completes.
        let sent = unsafe { self.tx.produce(frames) };
        frames.drain(..sent);
        self.held -= sent;
        self.in_tx += sent;
        if sent > 0 && self.tx.needs_wakeup() {
            let _ = self.tx.wakeup();
        }
        self.check_accounting();
        sent
    }

    /// Takes back the frames whose transmission completed.
    pub fn reap_completions(&mut self) -> usize {
        if self.in_tx == 0 {
            return 0;
        }
        self.scratch.clear();
        self.scratch.resize(BATCH, self.placeholder);
        // Safety: the completion ring only returns frames of this UMEM that
        // we put on the tx ring; from here they are ours again.
        let n = unsafe { self.completion.consume(&mut self.scratch) };
        self.free.extend_from_slice(&self.scratch[..n]);
        self.in_tx -= n;
        self.check_accounting();
        n
    }

    /// Kicks the kernel to send what is on the tx ring (copy mode needs a
    /// syscall to transmit; with need_wakeup only when it asks).
    pub fn kick_tx(&mut self) {
        if self.in_tx > 0 && self.tx.needs_wakeup() {
            let _ = self.tx.wakeup();
        }
    }

    /// Waits until a frame arrives or `timeout_ms` passes.
    pub fn wait_readable(&mut self, timeout_ms: i32) -> bool {
        self.rx.poll(timeout_ms).unwrap_or(false)
    }

    /// Sleeps until frames arrive, `wake` becomes readable, or `timeout_ms`
    /// passes.
    pub fn wait_readable_or(&self, wake: BorrowedFd<'_>, timeout_ms: u16) {
        use nix::poll::{poll, PollFd, PollFlags};
        let mut fds = [
            PollFd::new(self.fd(), PollFlags::POLLIN),
            PollFd::new(wake, PollFlags::POLLIN),
        ];
        let _ = poll(&mut fds, timeout_ms);
    }
}
