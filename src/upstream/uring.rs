//! The shard's io_uring: backend sockets (connect with a linked timeout,
//! multishot receive into a provided-buffer ring, send, cancel, close) and
//! the poll of the AF_XDP socket, so a shard waits in one place for
//! packets, completions and its next timer.
//!
//! # Ownership of lent memory (s2n-quic style: the I/O layer owns it)
//! Every socket handed to [`Uring::open`] lives in a slot of this ring's
//! slab, and the slot owns everything the kernel is given for it: the
//! file descriptor, the connect address and timeout, the send buffer
//! ([`Outbox`]), and the provided buffers that came back with received
//! bytes and are not consumed yet. The slot counts its own operations in
//! flight and:
//! - is never reused while one is in flight (so no pointer it lent
//!   dangles, and a completion always finds the slot it was issued for);
//! - after [`Uring::release`], cancels what is in flight, recycles what it
//!   holds, and submits the close itself once nothing else is in flight
//!   (io_uring does not order independent entries: a close queued beside a
//!   send or shutdown would let those hit whatever socket gets the fd
//!   number next);
//! - drops its attachment (e.g. a source-port lease) only when the close
//!   has completed, then goes back to the free list.
//!
//! The provided buffers and their ring belong to [`Uring`] and are freed
//! only after the ring itself is closed (field order in the struct).
//!
//! Submission never blocks: entries are queued in the submission ring and
//! handed to the kernel once per shard-loop iteration ([`Uring::submit`]),
//! together with the wait when the shard is idle ([`Uring::wait`]).

use lastack_core::slots::{cut_free_tail, LowestFree};
use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};
use nix::sys::socket::{SockaddrLike, SockaddrStorage};

/// What an operation was, carried in its user data with the slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Op {
    Connect = 1,
    /// The timeout linked to a connect (its own completion).
    ConnectTimeout = 2,
    Recv = 3,
    Send = 4,
    Close = 6,
    /// An `AsyncCancel` of everything in flight on the slot's socket.
    Cancel = 7,
    /// The poll of the AF_XDP socket (slot unused).
    PollXsk = 8,
    /// The poll of the shard's control eventfd (slot unused).
    PollWake = 9,
}

impl Op {
    fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Connect,
            2 => Self::ConnectTimeout,
            3 => Self::Recv,
            4 => Self::Send,
            6 => Self::Close,
            7 => Self::Cancel,
            8 => Self::PollXsk,
            9 => Self::PollWake,
            _ => return None,
        })
    }
}

/// An operation's identity in its user data: the op, the slot and the
/// slot's generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Token {
    op: Op,
    slot: u32,
    generation: u32,
}

impl Token {
    /// Generations wrap at 24 bits.
    const GENERATION_MASK: u32 = 0x00ff_ffff;

    fn encode(self) -> u64 {
        (self.op as u64) << 56
            | u64::from(self.generation & Self::GENERATION_MASK) << 32
            | u64::from(self.slot)
    }

    fn decode(user_data: u64) -> Option<Self> {
        Some(Self {
            op: Op::from_u8((user_data >> 56) as u8)?,
            generation: (user_data >> 32) as u32 & Self::GENERATION_MASK,
            slot: user_data as u32,
        })
    }
}

/// A socket of this ring: slot and generation (a handle to a slot that has
/// since been reused names nothing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SocketId {
    index: u32,
    generation: u32,
}

/// What happened to a socket, for its owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketEvent {
    /// The connect finished: `Ok` connected, `Err(errno)` refused, timed
    /// out (`ECANCELED`), unreachable, or the 4-tuple was still in use
    /// (`EADDRNOTAVAIL`).
    Connected(Result<(), i32>),
    /// A send finished: `Ok(n)` bytes left the outbox (it may hold more:
    /// send again), `Err(errno)` the socket failed.
    Sent(Result<usize, i32>),
    /// Bytes arrived; they wait in [`Uring::received`].
    Received(usize),
    /// The peer's FIN: nothing more comes.
    Eof,
    /// The receive failed (reset, ...).
    ReceiveFailed(i32),
    /// The receive ended without data (its limit reached, cancelled, no
    /// provided buffer free): arm another when there is room.
    ReceiveStopped,
}

/// One completion for an owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The value given to [`Uring::open`].
    pub owner: u64,
    pub socket: SocketId,
    pub event: SocketEvent,
}

/// How much a receive may take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receive {
    /// A multishot receive that ends after about this many bytes (to
    /// within one buffer; kernel ≥ 6.17, see [`Uring::limits_supported`]).
    Multishot { limit: u32 },
    /// One receive into one provided buffer.
    Once,
}

/// How a released socket ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// close(2): a clean end (FIN if not sent yet).
    Close,
    /// close(2) with `SO_LINGER` 0: RST, no TIME-WAIT (the client reset:
    /// the backend should see an abort).
    Reset,
}

/// Sizes of a shard's ring.
#[derive(Debug, Clone, Copy)]
pub struct UringConfig {
    /// Submission queue entries (completion queue: twice as many).
    pub entries: u32,
    /// Provided receive buffers: a power of two, at most 32768.
    pub buffers: u16,
    /// Bytes per provided buffer.
    pub buffer_size: u32,
    /// Bytes of each socket's send buffer.
    pub outbox_size: usize,
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            entries: 4096,
            buffers: 1024,
            buffer_size: 16 * 1024,
            outbox_size: 16 * 1024,
        }
    }
}

/// The ring's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UringStats {
    /// Provided buffers holding received bytes not consumed yet, and the
    /// most ever held from one batch of completions to the next, that is
    /// after their owners took what they could (backend → client
    /// backpressure: bytes waiting for a client's room).
    pub held_buffers: u64,
    pub held_buffers_peak: u64,
    /// Receives that found no provided buffer free.
    pub receive_buffer_shortage: u64,
    /// Provided buffers posted to the kernel now, waiting for data.
    pub posted_buffers: u64,
    /// Bytes of provided-buffer memory that may hold pages (posted since
    /// last given back).
    pub buffer_bytes: u64,
    /// Sockets in the slab (open, or closing after their release).
    pub sockets: u64,
    /// Send buffers lent to sockets now (holding bytes not sent yet).
    pub outboxes: u64,
    /// Completions whose user data we did not issue (never expected).
    pub foreign_completions: u64,
}

/// The buffer group id of the provided-buffer ring.
const BUFFER_GROUP: u16 = 0;

/// Fewest provided buffers the ring holds posted (256 KiB at 16 KiB).
const MIN_POSTED: u16 = 16;

/// Free buffers outside the hot set go back to the kernel only when there
/// are at least this many with pages (1 MiB at 16 KiB): never a round of
/// `madvise` for a few pages.
const TRIM_AT_LEAST: u32 = 64;

/// Provided buffers (kernel ≥ 5.19 buffer ring), posted on demand: the
/// kernel takes one per received chunk; [`BufferRing::give_back`] frees it.
///
/// The kernel takes posted buffers in the order they were posted, so posting
/// every buffer would walk receives through all of them (and page in all of
/// their memory) under the lightest load. The ring holds only `target`
/// buffers at a time, the lowest free ones; `target` doubles when a receive
/// finds the ring empty or a batch used three quarters of it, and halves
/// when half of it went unused for a whole release period. The lowest
/// `target` buffers are the hot set; free buffers past it that hold pages
/// go back to the kernel in [`BufferRing::release_memory`], so the memory
/// follows the load.
///
/// Invariant: every buffer is exactly one of free (its bit set in `free`),
/// posted (`posted` of them), or held by a slot; a buffer that may hold
/// pages has its bit set in `paged` (`paged_count` of them).
struct BufferRing {
    /// The ring of entries, page-aligned (mmap), `count` long.
    ring: *mut types::BufRingEntry,
    ring_bytes: usize,
    /// The bytes of all buffers, `count * size` (an anonymous mapping:
    /// untouched pages cost nothing, trimmed ones go back).
    memory: *mut u8,
    memory_bytes: usize,
    count: u16,
    size: u32,
    /// Our copy of the tail; published with a release store.
    tail: u16,
    /// Posted since the last publish.
    unpublished: usize,
    /// One bit per buffer, set while it is free and not posted.
    free: Box<[u64]>,
    /// No free bit below this word.
    first_free_word: usize,
    /// Buffers posted and not yet taken by the kernel.
    posted: u16,
    /// How many the ring should hold posted.
    target: u16,
    /// The fewest left posted at a publish since the last release period.
    least_posted: u16,
    /// `target` grew in this release period.
    grew: bool,
    /// One bit per buffer posted since it was last trimmed.
    paged: Box<[u64]>,
    paged_count: u32,
}

impl BufferRing {
    fn new(count: u16, size: u32) -> io::Result<Self> {
        if !count.is_power_of_two() || count > 32768 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "provided buffers: a power of two up to 32768",
            ));
        }
        let ring_bytes = usize::from(count) * std::mem::size_of::<types::BufRingEntry>();
        let ring = anonymous_mapping(ring_bytes)?;
        let memory_bytes = usize::from(count) * size as usize;
        let memory = match anonymous_mapping(memory_bytes) {
            Ok(memory) => memory,
            Err(e) => {
                // Safety: mapped just above with this length, not shared.
                unsafe { libc::munmap(ring, ring_bytes) };
                return Err(e);
            }
        };
        let words = usize::from(count).div_ceil(64);
        let mut free = vec![u64::MAX; words].into_boxed_slice();
        if count < 64 {
            free[0] = (1u64 << count) - 1;
        }
        let mut this = Self {
            ring: ring.cast(),
            ring_bytes,
            memory: memory.cast(),
            memory_bytes,
            count,
            size,
            tail: 0,
            unpublished: 0,
            free,
            first_free_word: 0,
            posted: 0,
            target: MIN_POSTED.min(count),
            least_posted: u16::MAX,
            grew: false,
            paged: vec![0; words].into_boxed_slice(),
            paged_count: 0,
        };
        this.publish();
        Ok(this)
    }

    /// Buffer `bid` is free again (consumed, or never filled).
    fn give_back(&mut self, bid: u16) {
        let word = usize::from(bid) / 64;
        debug_assert_eq!(self.free[word] & (1 << (bid % 64)), 0, "freed twice");
        self.free[word] |= 1 << (bid % 64);
        self.first_free_word = self.first_free_word.min(word);
    }

    /// The kernel took a posted buffer (a completion named it).
    fn taken(&mut self) {
        self.posted = self.posted.saturating_sub(1);
    }

    /// A receive found no buffer posted: hold twice as many.
    fn grow(&mut self) {
        self.target = self.target.saturating_mul(2).min(self.count);
        self.grew = true;
    }

    /// The lowest free buffer, taken out of the free set.
    fn take_lowest(&mut self) -> Option<u16> {
        while let Some(word) = self.free.get_mut(self.first_free_word) {
            if *word != 0 {
                let bit = word.trailing_zeros();
                *word &= !(1 << bit);
                return Some((self.first_free_word * 64) as u16 + bit as u16);
            }
            self.first_free_word += 1;
        }
        None
    }

    /// Posts buffer `bid` at our tail (not visible before the tail store).
    fn post(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.memory as u64 + u64::from(bid) * u64::from(self.size);
        // Safety: `index < count`, the ring has `count` entries; the kernel
        // reads only entries between its head and the published tail, and
        // this one is past the published tail (at most `count` are posted).
        let entry = unsafe { &mut *self.ring.add(index) };
        entry.set_addr(addr);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
        self.unpublished += 1;
        self.posted += 1;
        let (word, bit) = (usize::from(bid) / 64, 1u64 << (bid % 64));
        if self.paged[word] & bit == 0 {
            self.paged[word] |= bit;
            self.paged_count += 1;
        }
    }

    /// Tops the ring up to `target` with the lowest free buffers (growing
    /// it first when the batch since the last publish used most of it) and
    /// makes them visible to the kernel.
    fn publish(&mut self) {
        self.least_posted = self.least_posted.min(self.posted);
        if self.posted < self.target / 4 && self.target < self.count {
            self.grow();
        }
        while self.posted < self.target {
            let Some(bid) = self.take_lowest() else {
                break;
            };
            self.post(bid);
        }
        if self.unpublished == 0 {
            return;
        }
        // Safety: the tail field overlays the first entry's `resv` (the
        // buffer-ring ABI); it is only ever accessed atomically here, and
        // the ring is mapped for the life of `self`.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.ring) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
        self.unpublished = 0;
    }

    /// Once per release period: halves `target` when half of it went
    /// unused, and gives the pages of free buffers past the hot set back
    /// to the kernel.
    fn release_memory(&mut self) {
        if !self.grew && self.least_posted > self.target / 2 && self.target > MIN_POSTED {
            self.target /= 2;
        }
        self.grew = false;
        self.least_posted = u16::MAX;
        let hot = usize::from(self.target);
        let cold = |w: usize, free: u64, paged: u64| {
            let below_hot = match hot.saturating_sub(w * 64) {
                0 => 0,
                n if n >= 64 => u64::MAX,
                n => (1u64 << n) - 1,
            };
            free & paged & !below_hot
        };
        let trimmable: u32 = (0..self.free.len())
            .map(|w| cold(w, self.free[w], self.paged[w]).count_ones())
            .sum();
        if trimmable < TRIM_AT_LEAST {
            return;
        }
        // Runs of cold buffers, one `madvise` each.
        let mut run: Option<(usize, usize)> = None;
        for w in 0..self.free.len() {
            let mut bits = cold(w, self.free[w], self.paged[w]);
            self.paged[w] &= !bits;
            while bits != 0 {
                let bid = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                match &mut run {
                    Some((_, end)) if *end == bid => *end += 1,
                    _ => {
                        if let Some(done) = run.replace((bid, bid + 1)) {
                            self.discard(done);
                        }
                    }
                }
            }
        }
        if let Some(done) = run {
            self.discard(done);
        }
        self.paged_count -= trimmable;
    }

    /// Gives the pages wholly inside buffers `first..end` back to the
    /// kernel (they read back as zeros).
    fn discard(&self, (first, end): (usize, usize)) {
        let page = page_size();
        let size = self.size as usize;
        let start = (first * size).next_multiple_of(page);
        let stop = end * size / page * page;
        if start < stop {
            // Safety: `start..stop` lies within the buffer mapping and
            // holds only free buffers (none posted, none held): neither
            // the kernel nor a slot reads or writes them.
            unsafe {
                libc::madvise(
                    self.memory.add(start).cast(),
                    stop - start,
                    libc::MADV_DONTNEED,
                )
            };
        }
    }

    /// Bytes of buffer memory that may hold pages.
    fn paged_bytes(&self) -> u64 {
        u64::from(self.paged_count) * u64::from(self.size)
    }

    fn bytes(&self, bid: u16, range: std::ops::Range<usize>) -> &[u8] {
        let size = self.size as usize;
        let end = range.end.min(size);
        let start = range.start.min(end);
        assert!(bid < self.count);
        // Safety: buffer `bid` lies within the mapping (`bid < count`), and
        // `start..end` within the buffer; it is held by a slot, so the
        // kernel does not write it while this borrow of `self` lasts.
        unsafe {
            std::slice::from_raw_parts(
                self.memory.add(usize::from(bid) * size + start),
                end - start,
            )
        }
    }
}

/// An anonymous private read-write mapping of `bytes`, page-aligned.
fn anonymous_mapping(bytes: usize) -> io::Result<*mut libc::c_void> {
    // Safety: an anonymous private mapping; the result is checked; the
    // caller unmaps it and never aliases it with Rust references beyond
    // what it hands out from the raw pointer.
    let mapped = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            bytes,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    };
    if mapped == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(mapped)
}

fn page_size() -> usize {
    // Safety: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).unwrap_or(4096).max(1)
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        // Safety: both mapped in `new` with these lengths; the ring (and so
        // the kernel's reference to either) is gone before this field
        // drops.
        unsafe {
            libc::munmap(self.ring.cast(), self.ring_bytes);
            libc::munmap(self.memory.cast(), self.memory_bytes);
        }
    }
}

/// A socket's send buffer: bytes `start..end` of `bytes` are waiting or
/// in flight. The storage is lent only while it holds bytes (from the
/// ring's spares, see [`Uring::fill_outbox`]), so an idle socket holds
/// none; it is writable only while no send is in flight, so the kernel
/// never reads bytes being changed.
#[derive(Debug, Default)]
struct Outbox {
    bytes: Option<Box<[u8]>>,
    start: usize,
    end: usize,
}

impl Outbox {
    /// Bytes not yet sent.
    fn pending(&self) -> usize {
        self.end - self.start
    }

    fn is_empty(&self) -> bool {
        self.start == self.end
    }
}

/// Send buffers given back that a ring keeps for reuse (4 MiB of them at
/// the default size); beyond, they are freed.
const SPARE_OUTBOXES: usize = 256;

/// A held provided buffer: received bytes `offset..len` not consumed yet.
#[derive(Debug, Clone, Copy)]
struct Held {
    buffer: u16,
    offset: u32,
    len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Receiving {
    Idle,
    Armed { multishot: bool, cancelled: bool },
}

/// The life of a slot (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Life {
    Free,
    /// Serving its owner.
    Open {
        owner: u64,
    },
    /// Released: draining what is in flight, then closed.
    Released,
    /// close(2) submitted.
    Closing,
}

/// Memory the kernel reads during a connect: stays put (boxed) and
/// unchanged until the connect's completions arrived.
struct ConnectArgs {
    addr: SockaddrStorage,
    timeout: types::Timespec,
}

struct Slot<A> {
    generation: u32,
    life: Life,
    fd: Option<OwnedFd>,
    in_flight: u32,
    send_in_flight: bool,
    receiving: Receiving,
    connect: Box<ConnectArgs>,
    outbox: Outbox,
    received: VecDeque<Held>,
    attachment: Option<A>,
}

/// A shard's io_uring and the backend sockets it drives; `A` is what each
/// socket carries until it is closed (the proxy's source-port lease).
pub struct Uring<A = ()> {
    // Field order matters: the ring closes before the buffers and slots
    // it may still reference are freed.
    ring: IoUring,
    buffers: BufferRing,
    slots: Vec<Slot<A>>,
    /// Free slots, lowest first (the free tail is cut off).
    free: LowestFree,
    /// Slots open or closing.
    in_use: usize,
    /// The generation new slots start at (above any cut-off slot's).
    generation_floor: u32,
    outbox_size: usize,
    /// Send buffers given back, for the next socket that has bytes.
    spare_outboxes: Vec<Box<[u8]>>,
    /// Operations submitted whose last completion has not arrived.
    in_flight: usize,
    /// Completion entries copied out of the ring (kept to avoid allocating).
    scratch: Vec<(u64, i32, u32)>,
    limits_supported: bool,
    xsk_poll_armed: bool,
    wake_poll_armed: bool,
    stats: UringStats,
}

/// The open slot `id` names, if it still serves an owner.
fn open_slot<A>(slots: &mut [Slot<A>], id: SocketId) -> Option<&mut Slot<A>> {
    slots
        .get_mut(id.index as usize)
        .filter(|s| s.generation == id.generation && matches!(s.life, Life::Open { .. }))
}

fn user_data(op: Op, slot: u32, generation: u32) -> u64 {
    Token {
        op,
        slot,
        generation,
    }
    .encode()
}

impl<A> Uring<A> {
    pub fn new(config: UringConfig) -> io::Result<Self> {
        // One thread submits and reaps (the shard's, which creates the
        // ring): completions' task work waits until the shard asks for it
        // (an enter with GETEVENTS, which `submit` and `sleep` make when
        // the kernel flags work pending) instead of interrupting the shard
        // with an IPI whenever a backend's bytes arrive on another CPU.
        // Kernels before 6.1 refuse the flags: the ring is then built
        // without them and runs completions as it always did.
        let mut plain = IoUring::builder();
        plain.setup_cqsize(config.entries * 2);
        let ring = plain
            .clone()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_taskrun_flag()
            .build(config.entries)
            .or_else(|e| {
                tracing::debug!("io_uring without deferred task work: {e}");
                plain.build(config.entries)
            })?;
        let buffers = BufferRing::new(config.buffers, config.buffer_size)?;
        // Safety: the ring memory is valid for `buffers` entries until the
        // ring is dropped (which happens before `buffers` drops).
        unsafe {
            ring.submitter().register_buf_ring_with_flags(
                buffers.ring as u64,
                buffers.count,
                BUFFER_GROUP,
                0,
            )?;
        }
        Ok(Self {
            ring,
            buffers,
            slots: Vec::new(),
            free: LowestFree::default(),
            in_use: 0,
            generation_floor: 0,
            outbox_size: config.outbox_size,
            spare_outboxes: Vec::new(),
            in_flight: 0,
            scratch: Vec::with_capacity(256),
            limits_supported: true,
            xsk_poll_armed: false,
            wake_poll_armed: false,
            stats: UringStats::default(),
        })
    }

    pub fn stats(&self) -> UringStats {
        UringStats {
            sockets: self.in_use as u64,
            posted_buffers: u64::from(self.buffers.posted),
            buffer_bytes: self.buffers.paged_bytes(),
            ..self.stats
        }
    }

    /// Whether completions' task work waits for the shard (a kernel with
    /// `IORING_SETUP_DEFER_TASKRUN`, 6.1 and later).
    pub fn defers_task_work(&self) -> bool {
        self.ring.params().is_setup_single_issuer()
    }

    /// Operations whose final completion has not arrived.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// False once the kernel refused a multishot receive limit (the
    /// owner's backpressure is then coarser: it cancels instead).
    pub fn limits_supported(&self) -> bool {
        self.limits_supported
    }

    // ---- Sockets ----

    /// Takes `fd` (a TCP socket, not yet connected) into a slot serving
    /// `owner`; `attachment` is dropped when the socket is closed.
    pub fn open(&mut self, fd: OwnedFd, owner: u64, attachment: A) -> SocketId {
        let slots = &self.slots;
        let index = match self
            .free
            .take(slots.len(), |i| slots[i as usize].life == Life::Free)
        {
            Some(index) => index,
            None => {
                self.slots.push(Slot {
                    generation: self.generation_floor,
                    life: Life::Free,
                    fd: None,
                    in_flight: 0,
                    send_in_flight: false,
                    receiving: Receiving::Idle,
                    connect: Box::new(ConnectArgs {
                        addr: SockaddrStorage::from(SocketAddr::from(([0, 0, 0, 0], 0))),
                        timeout: types::Timespec::new(),
                    }),
                    outbox: Outbox::default(),
                    received: VecDeque::new(),
                    attachment: None,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.in_use += 1;
        let slot = &mut self.slots[index as usize];
        debug_assert!(slot.life == Life::Free && slot.in_flight == 0);
        slot.life = Life::Open { owner };
        slot.fd = Some(fd);
        slot.send_in_flight = false;
        slot.receiving = Receiving::Idle;
        debug_assert!(slot.outbox.bytes.is_none(), "given back when freed");
        slot.attachment = Some(attachment);
        SocketId {
            index,
            generation: slot.generation,
        }
    }

    fn open_slot_ref(&self, id: SocketId) -> Option<&Slot<A>> {
        self.slots
            .get(id.index as usize)
            .filter(|s| s.generation == id.generation && matches!(s.life, Life::Open { .. }))
    }

    /// Connects `id` to `addr`, giving up after `timeout`: one
    /// [`SocketEvent::Connected`] follows.
    pub fn connect(&mut self, id: SocketId, addr: SocketAddr, timeout: Duration) {
        let Some(slot) = open_slot(&mut self.slots, id) else {
            return;
        };
        let Some(fd) = slot.fd.as_ref().map(|fd| fd.as_raw_fd()) else {
            return;
        };
        slot.connect.addr = SockaddrStorage::from(addr);
        slot.connect.timeout = types::Timespec::from(timeout);
        let args: &ConnectArgs = &slot.connect;
        let connect = opcode::Connect::new(types::Fd(fd), args.addr.as_ptr(), args.addr.len())
            .build()
            .flags(squeue::Flags::IO_LINK)
            .user_data(user_data(Op::Connect, id.index, id.generation));
        let timer = opcode::LinkTimeout::new(&args.timeout)
            .build()
            .user_data(user_data(Op::ConnectTimeout, id.index, id.generation));
        slot.in_flight += 2;
        // Safety: both entries point into `slot.connect`, boxed in the
        // slot, which is neither changed nor reused until its operations
        // (counted above) have completed.
        unsafe {
            self.push(connect);
            self.push(timer);
        }
        self.in_flight += 2;
    }

    /// When `id`'s send buffer is empty and no send is in flight: lends it
    /// storage and lets `fill` write into it (the storage goes back at once
    /// if `fill` wrote nothing). Returns the bytes waiting to be sent
    /// (those just written, or those still there from before), or `None`
    /// while a send is in flight.
    pub fn fill_outbox(
        &mut self,
        id: SocketId,
        fill: impl FnOnce(&mut [u8]) -> usize,
    ) -> Option<usize> {
        let size = self.outbox_size;
        let slot = open_slot(&mut self.slots, id).filter(|s| !s.send_in_flight)?;
        if !slot.outbox.is_empty() {
            return Some(slot.outbox.pending());
        }
        let mut bytes = slot
            .outbox
            .bytes
            .take()
            .or_else(|| self.spare_outboxes.pop())
            .unwrap_or_else(|| vec![0; size].into_boxed_slice());
        let n = fill(&mut bytes).min(bytes.len());
        self.stats.outboxes += 1;
        if n == 0 {
            give_back_outbox(&mut self.spare_outboxes, &mut self.stats.outboxes, bytes);
            return Some(0);
        }
        slot.outbox = Outbox {
            bytes: Some(bytes),
            start: 0,
            end: n,
        };
        Some(n)
    }

    /// True while a send of `id` is in flight.
    pub fn sending(&self, id: SocketId) -> bool {
        self.open_slot_ref(id).is_some_and(|s| s.send_in_flight)
    }

    /// Sends what `id`'s outbox holds (nothing if empty or a send is in
    /// flight): one [`SocketEvent::Sent`] follows. Returns true if sent.
    pub fn send(&mut self, id: SocketId) -> bool {
        let Some(slot) = open_slot(&mut self.slots, id) else {
            return false;
        };
        let Some(fd) = slot.fd.as_ref().map(|fd| fd.as_raw_fd()) else {
            return false;
        };
        if slot.send_in_flight || slot.outbox.is_empty() {
            return false;
        }
        let Some(bytes) = slot.outbox.bytes.as_deref() else {
            return false;
        };
        let pending = &bytes[slot.outbox.start..slot.outbox.end];
        let entry = opcode::Send::new(types::Fd(fd), pending.as_ptr(), pending.len() as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(Op::Send, id.index, id.generation));
        slot.send_in_flight = true;
        slot.in_flight += 1;
        // Safety: the bytes are in the slot's boxed outbox, which is not
        // reachable for writing (`fill_outbox` refuses), given back, nor
        // reused until the send's completion arrives.
        unsafe { self.push(entry) };
        self.in_flight += 1;
        true
    }

    /// True while a receive of `id` is armed.
    pub fn receiving(&self, id: SocketId) -> bool {
        self.open_slot_ref(id)
            .is_some_and(|s| s.receiving != Receiving::Idle)
    }

    /// Arms a receive on `id` (nothing if one is armed). Completions:
    /// [`SocketEvent::Received`] for each chunk, then the end
    /// (`Eof`, `ReceiveFailed`, or `ReceiveStopped`).
    pub fn receive(&mut self, id: SocketId, how: Receive) {
        let limits = self.limits_supported;
        let size = self.buffers.size;
        let Some(slot) = open_slot(&mut self.slots, id) else {
            return;
        };
        let Some(fd) = slot.fd.as_ref().map(|fd| fd.as_raw_fd()) else {
            return;
        };
        if slot.receiving != Receiving::Idle {
            return;
        }
        let data = user_data(Op::Recv, id.index, id.generation);
        let entry = match how {
            Receive::Multishot { limit } => {
                let entry = opcode::RecvMulti::new(types::Fd(fd), BUFFER_GROUP)
                    .build()
                    .user_data(data);
                if limit > 0 && limits {
                    with_optlen(entry, limit)
                } else {
                    entry
                }
            }
            Receive::Once => opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), size)
                .buf_group(BUFFER_GROUP)
                .build()
                .flags(squeue::Flags::BUFFER_SELECT)
                .user_data(data),
        };
        slot.receiving = Receiving::Armed {
            multishot: matches!(how, Receive::Multishot { .. }),
            cancelled: false,
        };
        slot.in_flight += 1;
        // Safety: the receive writes only into provided buffers, which
        // belong to the ring for its whole life.
        unsafe { self.push(entry) };
        self.in_flight += 1;
    }

    /// Cancels `id`'s armed multishot receive (its end follows as
    /// `ReceiveStopped` or data already on its way). Submitted at once:
    /// a multishot receive keeps filling buffers at line rate until the
    /// cancel lands. Rare: only when a client stops keeping up.
    pub fn cancel_receive(&mut self, id: SocketId) {
        let Some(slot) = open_slot(&mut self.slots, id) else {
            return;
        };
        let Receiving::Armed {
            multishot: true,
            cancelled: false,
        } = slot.receiving
        else {
            return;
        };
        slot.receiving = Receiving::Armed {
            multishot: true,
            cancelled: true,
        };
        slot.in_flight += 1;
        let entry = opcode::AsyncCancel::new(user_data(Op::Recv, id.index, id.generation))
            .build()
            .user_data(user_data(Op::Cancel, id.index, id.generation));
        // Safety: a cancel carries no pointer.
        unsafe { self.push(entry) };
        self.in_flight += 1;
        self.submit();
    }

    /// Received bytes of `id` not consumed yet (the oldest chunk; empty if
    /// none).
    pub fn received(&self, id: SocketId) -> &[u8] {
        match self.open_slot_ref(id).and_then(|s| s.received.front()) {
            Some(held) => self
                .buffers
                .bytes(held.buffer, held.offset as usize..held.len as usize),
            None => &[],
        }
    }

    /// True if `id` holds received bytes not consumed yet.
    pub fn holds_received(&self, id: SocketId) -> bool {
        self.open_slot_ref(id)
            .is_some_and(|s| !s.received.is_empty())
    }

    /// Marks `n` bytes of the oldest chunk consumed; a chunk consumed whole
    /// goes back to the kernel.
    pub fn consume(&mut self, id: SocketId, n: usize) {
        let Some(slot) = open_slot(&mut self.slots, id) else {
            return;
        };
        let Some(held) = slot.received.front_mut() else {
            return;
        };
        held.offset = (held.offset + n as u32).min(held.len);
        if held.offset == held.len {
            let buffer = held.buffer;
            slot.received.pop_front();
            self.buffers.give_back(buffer);
            self.stats.held_buffers -= 1;
        }
    }

    /// shutdown(SHUT_WR): our FIN toward the peer. Synchronous on purpose:
    /// io_uring runs `IORING_OP_SHUTDOWN` on an io-wq worker thread (a
    /// thread hop and two context switches per connection, measured at 8 %
    /// of a shard's CPU under churn), while the system call never blocks.
    /// Failure (the peer already reset) shows on the next receive.
    pub fn shutdown_write(&mut self, id: SocketId) {
        if let Some(fd) = self.open_fd(id) {
            let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Write);
        }
    }

    /// The descriptor of `id`, while its owner holds it.
    fn open_fd(&self, id: SocketId) -> Option<RawFd> {
        Some(self.open_slot_ref(id)?.fd.as_ref()?.as_raw_fd())
    }

    /// What `id` was opened with, while its owner holds it.
    pub fn attachment(&mut self, id: SocketId) -> Option<&mut A> {
        open_slot(&mut self.slots, id)?.attachment.as_mut()
    }

    /// Whether the connection on `id` negotiated TCP timestamps (its
    /// TIME-WAIT can then be reused on the same bound port); `None` if the
    /// kernel would not say.
    pub fn uses_timestamps(&mut self, id: SocketId) -> Option<bool> {
        let fd = self.open_fd(id)?;
        // The head of `struct tcp_info`: tcpi_options is its sixth byte.
        let mut head = [0u8; 8];
        let mut len = head.len() as libc::socklen_t;
        // Safety: the kernel writes at most `len` bytes to `head`, which is
        // valid and that long for the call, and updates `len`.
        let rc = unsafe {
            libc::getsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_INFO,
                head.as_mut_ptr().cast(),
                &mut len,
            )
        };
        const TCPI_OPT_TIMESTAMPS: u8 = 1;
        (rc == 0 && len >= 6).then_some(head[5] & TCPI_OPT_TIMESTAMPS != 0)
    }

    /// Sends the ACK the kernel holds on `id` (see [`socket::open`]).
    ///
    /// [`socket::open`]: super::socket::open
    pub fn ack_now(&mut self, id: SocketId) {
        if let Some(fd) = self.open_fd(id) {
            if let Err(e) = super::socket::ack_now(fd) {
                tracing::debug!("TCP_QUICKACK: {e}");
            }
        }
    }

    /// Bytes sent on `id` that its peer has not acknowledged yet (still
    /// queued or in flight); `None` if the kernel would not say.
    pub fn unacknowledged(&mut self, id: SocketId) -> Option<usize> {
        let fd = self.open_fd(id)?;
        let mut bytes: libc::c_int = 0;
        // Safety: TIOCOUTQ (SIOCOUTQ on a TCP socket: write_seq - snd_una)
        // writes one int through the pointer, which is valid for the call.
        let rc = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut bytes as *mut libc::c_int) };
        (rc == 0).then_some(bytes.max(0) as usize)
    }

    /// The owner is done with `id`: nothing more is reported for it. What
    /// is in flight is cancelled, what it holds goes back, and it is closed
    /// (`how`) once nothing is in flight; its attachment is dropped when
    /// the close completes.
    pub fn release(&mut self, id: SocketId, how: Release) {
        let Some(slot) = open_slot(&mut self.slots, id) else {
            return;
        };
        slot.life = Life::Released;
        for held in slot.received.drain(..) {
            self.buffers.give_back(held.buffer);
            self.stats.held_buffers -= 1;
        }
        if let (Release::Reset, Some(fd)) = (how, slot.fd.as_ref()) {
            let zero = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // Failure only means a normal close follows.
            let _ = nix::sys::socket::setsockopt(fd, nix::sys::socket::sockopt::Linger, &zero);
        }
        match slot.fd.as_ref().map(|fd| fd.as_raw_fd()) {
            Some(fd) if slot.in_flight > 0 => {
                slot.in_flight += 1;
                let cancel = types::CancelBuilder::fd(types::Fd(fd)).all();
                let entry = opcode::AsyncCancel2::new(cancel)
                    .build()
                    .user_data(user_data(Op::Cancel, id.index, id.generation));
                // Safety: a cancel carries no pointer.
                unsafe { self.push(entry) };
                self.in_flight += 1;
            }
            _ => self.close_slot(id.index),
        }
    }

    /// Submits the close of a released slot with nothing in flight.
    fn close_slot(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        debug_assert!(slot.life == Life::Released && slot.in_flight == 0);
        let Some(fd) = slot.fd.take() else {
            self.free_slot(index);
            return;
        };
        slot.life = Life::Closing;
        slot.in_flight += 1;
        let entry = opcode::Close::new(types::Fd(fd.into_raw_fd()))
            .build()
            .user_data(user_data(Op::Close, index, slot.generation));
        // Safety: a close carries no pointer; the descriptor is the ring's
        // now (taken out of the slot), closed by this operation.
        unsafe { self.push(entry) };
        self.in_flight += 1;
    }

    fn free_slot(&mut self, index: u32) {
        let slot = &mut self.slots[index as usize];
        if let Some(bytes) = std::mem::take(&mut slot.outbox).bytes {
            give_back_outbox(&mut self.spare_outboxes, &mut self.stats.outboxes, bytes);
        }
        slot.life = Life::Free;
        slot.attachment = None;
        slot.generation = slot.generation.wrapping_add(1) & Token::GENERATION_MASK;
        self.free.give(index);
        self.in_use -= 1;
    }

    /// Cuts off the free slots at the end (nothing is in flight on a free
    /// slot) and gives back the memory of a slab far longer than needed;
    /// called now and then by the owner (as [`crate::tcp::Stack::release_memory`]).
    /// Also trims the provided-buffer ring ([`BufferRing::release_memory`]).
    pub fn release_memory(&mut self) {
        self.buffers.release_memory();
        let floor = &mut self.generation_floor;
        cut_free_tail(
            &mut self.slots,
            &mut self.free,
            |slot| slot.life == Life::Free,
            |slot| {
                debug_assert_eq!(slot.in_flight, 0);
                *floor = (*floor).max(slot.generation);
            },
        );
    }

    // ---- The AF_XDP poll, submission, completion ----

    /// Queues `entry`; when the submission queue is full, hands it to the
    /// kernel first.
    ///
    /// # Safety
    /// Every pointer in `entry` must stay valid and unchanged until the
    /// operation's completion arrives.
    unsafe fn push(&mut self, entry: squeue::Entry) {
        loop {
            // Safety: as the caller promised.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) {
                    tracing::warn!("io_uring submit: {e}");
                }
            }
        }
    }

    /// Hands queued entries to the kernel and runs deferred completion
    /// work (no syscall when there is neither); publishes recycled buffers.
    pub fn submit(&mut self) {
        self.buffers.publish();
        // Queued entries, or deferred completion work the kernel flagged.
        if self.ring.submission().is_empty() && !self.ring.submission().taskrun() {
            return;
        }
        if let Err(e) = self.ring.submit() {
            if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                tracing::warn!("io_uring submit: {e}");
            }
        }
    }

    /// Submits and sleeps until a completion arrives, `xsk` (the AF_XDP
    /// socket) or `wake` (the shard's control eventfd) is readable, or
    /// `timeout` passes.
    pub fn wait(&mut self, xsk: RawFd, wake: RawFd, timeout: Duration) {
        if !self.xsk_poll_armed {
            self.xsk_poll_armed = true;
            self.poll_readable(xsk, Op::PollXsk);
        }
        if !self.wake_poll_armed {
            self.wake_poll_armed = true;
            self.poll_readable(wake, Op::PollWake);
        }
        self.sleep(timeout);
    }

    /// A one-shot poll for input on `fd`, reported only to this layer.
    fn poll_readable(&mut self, fd: RawFd, op: Op) {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(user_data(op, u32::MAX, 0));
        // Safety: a poll carries no pointer.
        unsafe { self.push(entry) };
        self.in_flight += 1;
    }

    /// Submits and sleeps until a completion arrives or `timeout` passes.
    fn sleep(&mut self, timeout: Duration) {
        self.buffers.publish();
        if !self.ring.completion().is_empty() {
            self.submit();
            return;
        }
        let ts = types::Timespec::from(timeout);
        let args = types::SubmitArgs::new().timespec(&ts);
        match self.ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME) | Some(libc::EINTR) | Some(libc::EBUSY)
                ) => {}
            Err(e) => tracing::warn!("io_uring wait: {e}"),
        }
    }

    /// Moves up to `out.capacity()` completions for owners into `out`
    /// (cleared first); what concerns released sockets, cancels, timeouts
    /// and the AF_XDP poll is handled here.
    pub fn complete(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        // What the owners left held after the previous batch.
        self.stats.held_buffers_peak = self.stats.held_buffers_peak.max(self.stats.held_buffers);
        let room = out.capacity().max(1);
        let mut raw = std::mem::take(&mut self.scratch);
        raw.clear();
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            raw.push((cqe.user_data(), cqe.result(), cqe.flags()));
            if raw.len() >= room {
                break;
            }
        }
        drop(cq);
        for &(data, result, flags) in &raw {
            if let Some(completion) = self.on_completion(data, result, flags) {
                out.push(completion);
            }
        }
        self.scratch = raw;
    }

    fn on_completion(&mut self, data: u64, result: i32, flags: u32) -> Option<Completion> {
        let Some(token) = Token::decode(data) else {
            self.stats.foreign_completions += 1;
            return None;
        };
        let more = cqueue::more(flags);
        let buffer = cqueue::buffer_select(flags);
        if buffer.is_some() {
            self.buffers.taken();
        }
        if !more {
            self.in_flight -= 1;
        }
        match token.op {
            Op::PollXsk => {
                self.xsk_poll_armed = false;
                return None;
            }
            Op::PollWake => {
                self.wake_poll_armed = false;
                return None;
            }
            _ => {}
        }
        let index = token.slot;
        let slot = self.slots.get_mut(index as usize)?;
        if slot.generation != token.generation {
            // Cannot happen (slots wait for their operations); a buffer
            // must still go back.
            self.stats.foreign_completions += 1;
            if let Some(buffer) = buffer {
                self.buffers.give_back(buffer);
            }
            return None;
        }
        if !more {
            slot.in_flight -= 1;
        }
        let socket = SocketId {
            index,
            generation: token.generation,
        };
        let event = match token.op {
            Op::Connect => Some(SocketEvent::Connected(if result < 0 {
                Err(-result)
            } else {
                Ok(())
            })),
            Op::Send => {
                slot.send_in_flight = false;
                if result >= 0 {
                    slot.outbox.start = (slot.outbox.start + result as usize).min(slot.outbox.end);
                    if slot.outbox.is_empty() {
                        if let Some(bytes) = slot.outbox.bytes.take() {
                            give_back_outbox(
                                &mut self.spare_outboxes,
                                &mut self.stats.outboxes,
                                bytes,
                            );
                        }
                    }
                    Some(SocketEvent::Sent(Ok(result as usize)))
                } else {
                    Some(SocketEvent::Sent(Err(-result)))
                }
            }
            Op::Recv => self.on_receive(index, result, buffer, more),
            Op::Close => {
                self.free_slot(index);
                return None;
            }
            Op::ConnectTimeout | Op::Cancel | Op::PollXsk | Op::PollWake => None,
        };
        let slot = &mut self.slots[index as usize];
        match slot.life {
            Life::Open { owner } => event.map(|event| Completion {
                owner,
                socket,
                event,
            }),
            Life::Released => {
                if slot.in_flight == 0 {
                    self.close_slot(index);
                }
                None
            }
            Life::Closing | Life::Free => None,
        }
    }

    /// A receive's completion: its bytes held for the owner, or its end.
    fn on_receive(
        &mut self,
        index: u32,
        result: i32,
        buffer: Option<u16>,
        more: bool,
    ) -> Option<SocketEvent> {
        let slot = &mut self.slots[index as usize];
        if !more {
            slot.receiving = Receiving::Idle;
        }
        let open = matches!(slot.life, Life::Open { .. });
        if let Some(buffer) = buffer {
            if result > 0 && open {
                slot.received.push_back(Held {
                    buffer,
                    offset: 0,
                    len: result as u32,
                });
                self.stats.held_buffers += 1;
            } else {
                self.buffers.give_back(buffer);
            }
        }
        match result {
            n if n > 0 => Some(SocketEvent::Received(n as usize)),
            0 => Some(SocketEvent::Eof),
            e if e == -libc::ENOBUFS => {
                self.stats.receive_buffer_shortage += 1;
                self.buffers.grow();
                Some(SocketEvent::ReceiveStopped)
            }
            e if e == -libc::ECANCELED => Some(SocketEvent::ReceiveStopped),
            e if e == -libc::EINVAL && self.limits_supported => {
                // An older kernel refused the receive limit: the owner
                // re-arms, now without.
                tracing::warn!("kernel without multishot receive limits: backpressure is coarser");
                self.limits_supported = false;
                Some(SocketEvent::ReceiveStopped)
            }
            e => Some(SocketEvent::ReceiveFailed(-e)),
        }
    }

    /// Releases every open socket (`how`) and waits (bounded) for every
    /// operation in flight to complete; used at shutdown.
    pub fn drain(&mut self, how: Release, deadline: Duration) {
        for index in 0..self.slots.len() as u32 {
            let slot = &self.slots[index as usize];
            if matches!(slot.life, Life::Open { .. }) {
                let id = SocketId {
                    index,
                    generation: slot.generation,
                };
                self.release(id, how);
            }
        }
        self.submit();
        let start = std::time::Instant::now();
        let mut batch = Vec::with_capacity(256);
        while self.in_flight > usize::from(self.xsk_poll_armed) + usize::from(self.wake_poll_armed)
            && start.elapsed() < deadline
        {
            self.sleep(Duration::from_millis(10));
            self.complete(&mut batch);
            self.submit();
        }
    }
}

/// Sets the `optlen` field of a multishot receive's entry: the byte limit
/// after which it ends (kernel ≥ 6.17; older kernels answer `-EINVAL`).
fn with_optlen(entry: squeue::Entry, limit: u32) -> squeue::Entry {
    // Safety: `squeue::Entry` is `#[repr(C)]` around the 64-byte
    // `io_uring_sqe`, where every byte pattern is valid; bytes 44..48 are
    // the `optlen` union member (io_uring.h).
    let mut bytes: [u8; 64] = unsafe { std::mem::transmute(entry) };
    bytes[44..48].copy_from_slice(&limit.to_ne_bytes());
    // Safety: as above, back to the same type.
    unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(bytes) }
}

/// A lent send buffer comes back (`lent` counts those out): kept as a
/// spare, or freed.
fn give_back_outbox(spares: &mut Vec<Box<[u8]>>, lent: &mut u64, bytes: Box<[u8]>) {
    *lent -= 1;
    if spares.len() < SPARE_OUTBOXES {
        spares.push(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{Ipv4Addr, TcpListener, TcpStream};

    #[test]
    fn tokens_round_trip() {
        for op in [Op::Connect, Op::Recv, Op::Close, Op::PollXsk] {
            let token = Token {
                op,
                slot: 0xdead_beef,
                generation: 0x12_3456,
            };
            assert_eq!(Token::decode(token.encode()), Some(token));
        }
        assert_eq!(Token::decode(0), None);
    }

    /// Completions of a test, kept in order so none is lost when several
    /// arrive in one batch.
    struct Waiter(VecDeque<Completion>);

    impl Waiter {
        fn next<A>(
            &mut self,
            uring: &mut Uring<A>,
            want: impl Fn(&SocketEvent) -> bool,
        ) -> SocketEvent {
            let mut out = Vec::with_capacity(16);
            for _ in 0..500 {
                if let Some(i) = self.0.iter().position(|c| want(&c.event)) {
                    return self.0.remove(i).unwrap().event;
                }
                uring.sleep(Duration::from_millis(10));
                uring.complete(&mut out);
                self.0.extend(out.drain(..));
            }
            panic!("no such completion; had {:?}", self.0);
        }
    }

    /// A ring with `buffers` provided buffers of `size` bytes, and a waiter.
    fn ring(buffers: u16, size: u32) -> (Uring<Attachment>, Waiter) {
        let uring = Uring::new(UringConfig {
            entries: 64,
            buffers,
            buffer_size: size,
            outbox_size: 4096,
        })
        .unwrap();
        (uring, Waiter(VecDeque::new()))
    }

    /// Counts its drops: when the slot lets it go.
    struct Attachment(std::rc::Rc<std::cell::Cell<u32>>);

    impl Drop for Attachment {
        fn drop(&mut self) {
            self.0.set(self.0.get() + 1);
        }
    }

    fn tcp_socket() -> OwnedFd {
        nix::sys::socket::socket(
            nix::sys::socket::AddressFamily::Inet,
            nix::sys::socket::SockType::Stream,
            nix::sys::socket::SockFlag::SOCK_CLOEXEC,
            None,
        )
        .unwrap()
    }

    fn connected(uring: &mut Uring<Attachment>, waiter: &mut Waiter, port: u16) -> SocketId {
        let id = uring.open(tcp_socket(), 7, Attachment(Default::default()));
        uring.connect(
            id,
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_secs(2),
        );
        uring.submit();
        let done = waiter.next(uring, |e| matches!(e, SocketEvent::Connected(_)));
        assert_eq!(done, SocketEvent::Connected(Ok(())));
        id
    }

    fn read_all_received<A>(uring: &mut Uring<A>, id: SocketId, into: &mut Vec<u8>) {
        loop {
            let chunk = uring.received(id).to_vec();
            if chunk.is_empty() {
                return;
            }
            into.extend_from_slice(&chunk);
            uring.consume(id, chunk.len());
        }
    }

    /// With task work deferred to the shard, a shard that never sleeps
    /// (busy polling: `submit` and `complete` only) still gets its
    /// completions: `submit` enters the kernel when it flags work pending.
    #[test]
    fn a_busy_shard_gets_completions_without_sleeping() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mut uring, mut waiter) = ring(8, 4096);
        assert!(uring.defers_task_work(), "this kernel (6.1+) defers");
        let id = connected(&mut uring, &mut waiter, port);
        let (mut server, _) = listener.accept().unwrap();
        uring.receive(id, Receive::Multishot { limit: 0 });
        uring.submit();
        // Written from another thread, as a backend's bytes arrive.
        let writer = std::thread::spawn(move || {
            server.write_all(&[9; 3000]).unwrap();
            server
        });
        let mut received = Vec::new();
        let mut out = Vec::with_capacity(16);
        let started = std::time::Instant::now();
        while received.len() < 3000 {
            assert!(started.elapsed() < Duration::from_secs(5), "no completion");
            uring.submit();
            uring.complete(&mut out);
            read_all_received(&mut uring, id, &mut received);
        }
        assert_eq!(received, vec![9; 3000]);
        drop(writer.join().unwrap());
    }

    /// Loopback kernel sockets: connect with a linked timeout, multishot
    /// receive into provided buffers held for the owner, send from the
    /// outbox, then release: the close happens and the attachment drops.
    #[test]
    fn connect_send_receive_and_release() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mut uring, mut waiter) = ring(8, 4096);
        let drops = std::rc::Rc::new(std::cell::Cell::new(0));
        let id = uring.open(tcp_socket(), 7, Attachment(drops.clone()));
        uring.connect(
            id,
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_secs(2),
        );
        uring.submit();
        let done = waiter.next(&mut uring, |e| matches!(e, SocketEvent::Connected(_)));
        assert_eq!(done, SocketEvent::Connected(Ok(())));
        let (mut server, _) = listener.accept().unwrap();

        uring.receive(id, Receive::Multishot { limit: 0 });
        let mut received = Vec::new();
        for round in 0..3u8 {
            server.write_all(&[round; 5000]).unwrap();
            while received.len() < 5000 * (round as usize + 1) {
                waiter.next(&mut uring, |e| matches!(e, SocketEvent::Received(_)));
                read_all_received(&mut uring, id, &mut received);
            }
        }
        assert_eq!(received.len(), 15000);
        assert!(received[..5000].iter().all(|&b| b == 0));
        assert!(received[10000..].iter().all(|&b| b == 2));
        assert_eq!(uring.stats().held_buffers, 0, "consumed buffers went back");

        assert_eq!(uring.fill_outbox(id, |_| 0), Some(0));
        assert_eq!(uring.stats().outboxes, 0, "nothing written, nothing lent");
        assert_eq!(
            uring.fill_outbox(id, |buf| {
                buf[..13].copy_from_slice(b"hello backend");
                13
            }),
            Some(13)
        );
        assert_eq!(uring.stats().outboxes, 1);
        assert!(uring.send(id));
        assert_eq!(
            uring.fill_outbox(id, |_| unreachable!()),
            None,
            "no writing while the send is in flight"
        );
        assert_eq!(
            waiter.next(&mut uring, |e| matches!(e, SocketEvent::Sent(_))),
            SocketEvent::Sent(Ok(13))
        );
        assert_eq!(uring.fill_outbox(id, |_| 0), Some(0));
        assert_eq!(uring.stats().outboxes, 0, "sent: the buffer went back");
        uring.shutdown_write(id);
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"hello backend", "data then EOF");
        drop(server);
        assert_eq!(
            waiter.next(&mut uring, |e| matches!(e, SocketEvent::Eof)),
            SocketEvent::Eof
        );
        assert!(!uring.receiving(id), "EOF ends the multishot");
        uring.release(id, Release::Close);
        uring.submit();
        for _ in 0..200 {
            if uring.in_flight() == 0 && drops.get() == 1 {
                break;
            }
            uring.sleep(Duration::from_millis(10));
            uring.complete(&mut Vec::with_capacity(8));
        }
        assert_eq!(
            drops.get(),
            1,
            "the attachment dropped once the close completed"
        );
        assert_eq!(uring.stats().sockets, 0, "the slot is free again");
        let again = uring.open(tcp_socket(), 8, Attachment(drops.clone()));
        assert_ne!(again, id, "a reused slot has a new generation");
        assert_eq!(
            uring.fill_outbox(id, |_| unreachable!()),
            None,
            "the old handle names nothing"
        );
    }

    /// A socket released with a receive armed and bytes held: the receive
    /// is cancelled, the held buffers go back, nothing more is reported,
    /// and the close waits for the cancelled receive.
    #[test]
    fn release_cancels_and_recycles_what_the_socket_holds() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mut uring, mut waiter) = ring(8, 1024);
        let id = connected(&mut uring, &mut waiter, port);
        let (mut server, _) = listener.accept().unwrap();
        uring.receive(id, Receive::Multishot { limit: 0 });
        uring.submit();
        server.write_all(&[1u8; 3000]).unwrap();
        waiter.next(&mut uring, |e| matches!(e, SocketEvent::Received(_)));
        assert!(uring.holds_received(id));
        uring.release(id, Release::Reset);
        assert_eq!(uring.stats().held_buffers, 0);
        uring.submit();
        let mut out = Vec::with_capacity(16);
        for _ in 0..200 {
            uring.sleep(Duration::from_millis(10));
            uring.complete(&mut out);
            assert!(out.is_empty(), "nothing reported after release: {out:?}");
            if uring.in_flight() == 0 {
                break;
            }
        }
        assert_eq!(uring.in_flight(), 0);
        assert_eq!(uring.stats().sockets, 0);
        // SO_LINGER 0: the server sees a reset, not a clean end.
        let mut rest = Vec::new();
        let err = server.read_to_end(&mut rest).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    }

    /// A limited multishot receive ends once it has delivered its limit (to
    /// within one buffer), leaving the rest in the socket.
    #[test]
    fn a_multishot_receive_stops_at_its_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mut uring, mut waiter) = ring(16, 1024);
        let id = connected(&mut uring, &mut waiter, port);
        let (mut server, _) = listener.accept().unwrap();
        server.write_all(&[5u8; 10_000]).unwrap();
        // Until all of it is in our receive queue (a peek that would block
        // returns an error, not 0).
        let fd = uring.slots[0].fd.as_ref().unwrap().as_raw_fd();
        let mut peek = [0u8; 10_000];
        let flags = nix::sys::socket::MsgFlags::MSG_PEEK | nix::sys::socket::MsgFlags::MSG_DONTWAIT;
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while nix::sys::socket::recv(fd, &mut peek, flags).unwrap_or(0) < 10_000 {
            assert!(
                std::time::Instant::now() < deadline,
                "the bytes never arrived"
            );
            std::thread::yield_now();
        }
        uring.receive(id, Receive::Multishot { limit: 3000 });
        let mut got = 0;
        loop {
            match waiter.next(&mut uring, |_| true) {
                SocketEvent::Received(n) => {
                    got += n;
                    let chunk = uring.received(id).len();
                    uring.consume(id, chunk);
                }
                SocketEvent::ReceiveStopped => break,
                other => panic!("{other:?}"),
            }
            if !uring.receiving(id) && !uring.holds_received(id) {
                break;
            }
        }
        // The kernel checks the limit after each buffer: it stops within
        // one buffer past it.
        assert!((3000..3000 + 1024).contains(&got), "stopped at {got}");
        assert!(!uring.receiving(id));
    }

    /// Takes events for `id` until `done` says so: receives are left held
    /// (or read into `into` when given), a stopped receive is re-armed.
    fn receive_until<A>(
        uring: &mut Uring<A>,
        waiter: &mut Waiter,
        id: SocketId,
        mut into: Option<&mut Vec<u8>>,
        done: impl Fn(usize) -> bool,
    ) -> usize {
        let mut got = 0;
        while !done(got) {
            match waiter.next(uring, |_| true) {
                SocketEvent::Received(n) => got += n,
                SocketEvent::ReceiveStopped => uring.receive(id, Receive::Multishot { limit: 0 }),
                other => panic!("{other:?}"),
            }
            if let Some(into) = into.as_deref_mut() {
                read_all_received(uring, id, into);
            }
        }
        got
    }

    /// Light traffic cycles through the lowest few provided buffers (so
    /// it pages in little memory, not the whole ring); a burst that holds
    /// many makes the ring post more; once it has passed, the ring shrinks
    /// and the burst's pages go back to the kernel.
    #[test]
    fn provided_buffers_follow_the_load() {
        const SIZE: u32 = 4096;
        const BURST: usize = 1 << 20;
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mut uring, mut waiter) = ring(1024, SIZE);
        let id = connected(&mut uring, &mut waiter, port);
        let (mut server, _) = listener.accept().unwrap();
        uring.receive(id, Receive::Multishot { limit: 0 });
        // One 100-byte message at a time, a release period every 50.
        let light = |uring: &mut Uring<Attachment>, waiter: &mut Waiter, server: &mut TcpStream| {
            for i in 0..1000 {
                server.write_all(&[1u8; 100]).unwrap();
                let mut got = Vec::new();
                receive_until(uring, waiter, id, Some(&mut got), |n| n >= 100);
                assert_eq!(got, [1u8; 100]);
                if i % 50 == 49 {
                    uring.release_memory();
                }
            }
        };
        light(&mut uring, &mut waiter, &mut server);
        let calm = uring.stats();
        // The lowest `MIN_POSTED`, and a few more posted while a received
        // one was still held: not the ring's 1024.
        let few = 4 * u64::from(MIN_POSTED) * u64::from(SIZE);
        assert!(calm.buffer_bytes <= few, "{calm:?}");

        let writer = std::thread::spawn(move || {
            server.write_all(&vec![2u8; BURST]).unwrap();
            server
        });
        receive_until(&mut uring, &mut waiter, id, None, |n| n >= BURST);
        let mut server = writer.join().unwrap();
        let peak = uring.stats();
        assert!(
            peak.held_buffers >= (BURST / SIZE as usize) as u64,
            "the burst is held: {peak:?}"
        );
        assert!(peak.buffer_bytes >= BURST as u64);
        let mut burst = Vec::new();
        read_all_received(&mut uring, id, &mut burst);
        assert!(burst.len() == BURST && burst.iter().all(|&b| b == 2));
        assert_eq!(uring.stats().held_buffers, 0);

        light(&mut uring, &mut waiter, &mut server);
        // What is left: the hot set, buffers still posted from the burst
        // or used while another was held, and fewer than `TRIM_AT_LEAST`
        // cold ones not worth a round of madvise.
        let after = uring.stats();
        assert!(
            after.buffer_bytes
                < (2 * u64::from(MIN_POSTED) + u64::from(TRIM_AT_LEAST)) * u64::from(SIZE),
            "the burst's pages went back: {after:?} after {peak:?}"
        );
    }

    /// A connect to an address that never answers ends at the linked
    /// timeout with -ECANCELED.
    #[test]
    fn connect_timeout_cancels_the_connect() {
        // A listener with a full accept queue drops further SYNs: a local
        // blackhole (TEST-NET addresses are not allowed here).
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        nix::sys::socket::listen(&listener, nix::sys::socket::Backlog::new(0).unwrap()).unwrap();
        let mut fillers = Vec::new();
        for _ in 0..4 {
            if let Ok(s) = TcpStream::connect_timeout(
                &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                Duration::from_millis(200),
            ) {
                fillers.push(s);
            }
        }
        let (mut uring, mut waiter) = ring(2, 1024);
        let id = uring.open(tcp_socket(), 1, Attachment(Default::default()));
        let started = std::time::Instant::now();
        uring.connect(
            id,
            SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            Duration::from_millis(300),
        );
        uring.submit();
        let done = waiter.next(&mut uring, |e| matches!(e, SocketEvent::Connected(_)));
        assert_eq!(
            done,
            SocketEvent::Connected(Err(libc::ECANCELED)),
            "timed out"
        );
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
