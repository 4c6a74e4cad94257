//! The shard's io_uring: backend sockets (connect with a linked timeout,
//! multishot receive into a provided-buffer ring, send, shutdown, close,
//! cancel) and the poll of the AF_XDP socket, so a shard waits in one
//! place for packets, completions and its next timer.
//!
//! # Ownership of lent memory
//! Every pointer given to the kernel stays valid until the operation's
//! completion arrives:
//! - the provided buffers and their ring belong to [`Uring`] and are freed
//!   only after the ring itself is closed (field order in the struct); the
//!   owner cancels and drains what is in flight first
//!   ([`crate::proxy::Proxy::shutdown`], [`Uring::drain`]);
//! - a send's bytes and a connect's address live in the caller's session
//!   ([`crate::proxy::Session`]), which is not reused while it has
//!   operations in flight (the caller counts them by their completions).
//!
//! Submission never blocks: entries are queued in the submission ring and
//! handed to the kernel once per shard-loop iteration ([`Uring::submit`]),
//! together with the wait when the shard is idle ([`Uring::wait`]).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring};

/// What an operation was, carried in its user data with the session slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Op {
    Connect = 1,
    /// The timeout linked to a connect (its own completion).
    ConnectTimeout = 2,
    Recv = 3,
    Send = 4,
    Close = 6,
    /// An `AsyncCancel` of the slot's receive.
    Cancel = 7,
    /// The poll of the AF_XDP socket (slot unused).
    PollXsk = 8,
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
            _ => return None,
        })
    }
}

/// An operation's identity: the op, the session slot and the slot's
/// generation (so a completion can never be mistaken for one of a later
/// session in the same slot).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Token {
    pub op: Op,
    pub slot: u32,
    pub generation: u32,
}

impl Token {
    /// Generations wrap at 24 bits.
    pub const GENERATION_MASK: u32 = 0x00ff_ffff;

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

/// The user data of the slot's operation `op`.
fn user_data(op: Op, slot: u32, generation: u32) -> u64 {
    Token {
        op,
        slot,
        generation,
    }
    .encode()
}

/// One completion, copied out of the completion ring.
#[derive(Debug, Clone, Copy)]
pub struct Completion {
    pub token: Token,
    /// The syscall-style result: a count, or a negated errno.
    pub result: i32,
    /// The provided buffer that holds received bytes, if any.
    pub buffer: Option<u16>,
    /// More completions follow for this (multishot) operation.
    pub more: bool,
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
}

impl Default for UringConfig {
    fn default() -> Self {
        Self {
            entries: 4096,
            buffers: 1024,
            buffer_size: 16 * 1024,
        }
    }
}

/// The buffer group id of the provided-buffer ring.
const BUFFER_GROUP: u16 = 0;

/// Provided buffers (kernel ≥ 5.19 buffer ring): the kernel takes a buffer
/// per received chunk; [`Uring::recycle`] gives it back.
struct BufferRing {
    /// The ring of entries, page-aligned (mmap), `count` long.
    ring: *mut types::BufRingEntry,
    ring_bytes: usize,
    /// The bytes of all buffers, `count * size`.
    memory: Box<[u8]>,
    count: u16,
    size: u32,
    /// Our copy of the tail; published with a release store.
    tail: u16,
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
        // Safety: an anonymous private mapping; the result is checked; it
        // is unmapped in Drop and never aliased by Rust references except
        // through the raw pointer below.
        let ring = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                ring_bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ring == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let memory = vec![0u8; usize::from(count) * size as usize].into_boxed_slice();
        let mut this = Self {
            ring: ring.cast(),
            ring_bytes,
            memory,
            count,
            size,
            tail: 0,
        };
        for bid in 0..count {
            this.push(bid);
        }
        this.publish();
        Ok(this)
    }

    /// Queues buffer `bid` at our tail (not visible before `publish`).
    fn push(&mut self, bid: u16) {
        let index = usize::from(self.tail & (self.count - 1));
        let addr = self.memory.as_ptr() as u64 + u64::from(bid) * u64::from(self.size);
        // Safety: `index < count`, the ring has `count` entries; the kernel
        // reads only entries between its head and the published tail, and
        // this one is past the published tail.
        let entry = unsafe { &mut *self.ring.add(index) };
        entry.set_addr(addr);
        entry.set_len(self.size);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes pushed buffers visible to the kernel.
    fn publish(&self) {
        // Safety: the tail field overlays the first entry's `resv` (the
        // buffer-ring ABI); it is only ever accessed atomically here, and
        // the ring is mapped for the life of `self`.
        let tail = unsafe { &*(types::BufRingEntry::tail(self.ring) as *const AtomicU16) };
        tail.store(self.tail, Ordering::Release);
    }

    fn bytes(&self, bid: u16, len: usize) -> &[u8] {
        let start = usize::from(bid) * self.size as usize;
        &self.memory[start..start + len.min(self.size as usize)]
    }
}

impl Drop for BufferRing {
    fn drop(&mut self) {
        // Safety: mapped in `new` with this length; the ring (and so the
        // kernel's reference) is gone before this field drops.
        unsafe { libc::munmap(self.ring.cast(), self.ring_bytes) };
    }
}

/// A shard's io_uring. Not `Sync`: one shard thread owns it.
pub struct Uring {
    // Field order matters: the ring closes before the buffers it may
    // still reference are freed.
    ring: IoUring,
    buffers: BufferRing,
    /// Operations submitted whose last completion has not arrived.
    in_flight: usize,
    /// Buffers recycled since the last publish.
    recycled: usize,
    /// Completions whose user data we did not issue (never expected).
    pub foreign_completions: u64,
    limits_supported: bool,
}

// Safety: the raw ring pointer refers to memory this value owns; moving
// the value to another thread (the shard thread) moves that ownership.
unsafe impl Send for Uring {}

impl Uring {
    pub fn new(config: UringConfig) -> io::Result<Self> {
        let ring = IoUring::builder()
            .setup_cqsize(config.entries * 2)
            .build(config.entries)?;
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
            in_flight: 0,
            recycled: 0,
            foreign_completions: 0,
            limits_supported: true,
        })
    }

    /// Operations whose final completion has not arrived.
    pub fn in_flight(&self) -> usize {
        self.in_flight
    }

    /// Queues `entry` for one more operation in flight.
    fn start(&mut self, entry: squeue::Entry) {
        self.push(entry);
        self.in_flight += 1;
    }

    fn push(&mut self, entry: squeue::Entry) {
        loop {
            // Safety: every pointer in the entries built by this module is
            // owned as the module docs say until the completion.
            if unsafe { self.ring.submission().push(&entry) }.is_ok() {
                return;
            }
            // Full: hand the queue to the kernel and retry.
            if let Err(e) = self.ring.submit() {
                if e.raw_os_error() != Some(libc::EBUSY) {
                    tracing::warn!("io_uring submit: {e}");
                }
            }
        }
    }

    /// Connects `fd` to `addr` with a timeout: two completions follow
    /// ([`Op::Connect`] with the result, `-ECANCELED` if the timeout fired;
    /// and [`Op::ConnectTimeout`]).
    ///
    /// # Safety
    /// `addr` must stay valid and unmoved until the `Connect` completion;
    /// `timeout` until the next [`Uring::submit`] or [`Uring::wait`] (the
    /// kernel copies it when it takes the entry).
    pub unsafe fn connect(
        &mut self,
        fd: RawFd,
        addr: *const libc::sockaddr_in,
        slot: u32,
        generation: u32,
        timeout: *const types::Timespec,
    ) {
        let connect = opcode::Connect::new(
            types::Fd(fd),
            addr.cast(),
            std::mem::size_of::<libc::sockaddr_in>() as u32,
        )
        .build()
        .flags(squeue::Flags::IO_LINK)
        .user_data(user_data(Op::Connect, slot, generation));
        let timer = opcode::LinkTimeout::new(timeout)
            .build()
            .user_data(user_data(Op::ConnectTimeout, slot, generation));
        self.push(connect);
        self.push(timer);
        self.in_flight += 2;
    }

    /// Multishot receive on `fd` into provided buffers; completions until
    /// one without `more`. A nonzero `limit` ends it after that many bytes
    /// (to within one buffer: the kernel checks it after each; kernel ≥
    /// 6.17: `sqe->optlen` of a multishot receive; older kernels
    /// answer `-EINVAL`, after which [`Uring::limits_supported`] is false and
    /// the caller re-arms without). The limit is what makes backpressure
    /// exact: the kernel never pulls more than the client has room for.
    pub fn recv_multishot(&mut self, fd: RawFd, slot: u32, generation: u32, limit: u32) {
        let mut entry = opcode::RecvMulti::new(types::Fd(fd), BUFFER_GROUP)
            .build()
            .user_data(user_data(Op::Recv, slot, generation));
        if limit > 0 && self.limits_supported {
            // Safety: `squeue::Entry` is `#[repr(C)]` around the 64-byte
            // `io_uring_sqe`, where every byte pattern is valid; bytes
            // 44..48 are the `optlen` union member (io_uring.h).
            let mut bytes: [u8; 64] = unsafe { std::mem::transmute(entry) };
            bytes[44..48].copy_from_slice(&limit.to_ne_bytes());
            // Safety: as above, back to the same type.
            entry = unsafe { std::mem::transmute::<[u8; 64], squeue::Entry>(bytes) };
        }
        self.start(entry);
    }

    /// False once the kernel refused a multishot receive limit.
    pub fn limits_supported(&self) -> bool {
        self.limits_supported
    }

    /// Records that the kernel refused a limited multishot receive.
    pub fn disable_limits(&mut self) {
        if self.limits_supported {
            tracing::warn!("kernel without multishot receive limits: backpressure is coarser");
        }
        self.limits_supported = false;
    }

    /// One receive on `fd` into one provided buffer (for when the client
    /// has little room: at most one buffer's worth comes back).
    pub fn recv_once(&mut self, fd: RawFd, slot: u32, generation: u32) {
        let entry = opcode::Recv::new(types::Fd(fd), std::ptr::null_mut(), self.buffers.size)
            .buf_group(BUFFER_GROUP)
            .build()
            .flags(squeue::Flags::BUFFER_SELECT)
            .user_data(user_data(Op::Recv, slot, generation));
        self.start(entry);
    }

    /// Sends `len` bytes at `data`.
    ///
    /// # Safety
    /// The bytes must stay valid and unmoved until the completion.
    pub unsafe fn send(
        &mut self,
        fd: RawFd,
        data: *const u8,
        len: usize,
        slot: u32,
        generation: u32,
    ) {
        let entry = opcode::Send::new(types::Fd(fd), data, len as u32)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(user_data(Op::Send, slot, generation));
        self.start(entry);
    }

    /// close(fd).
    pub fn close(&mut self, fd: RawFd, slot: u32, generation: u32) {
        let entry = opcode::Close::new(types::Fd(fd))
            .build()
            .user_data(user_data(Op::Close, slot, generation));
        self.start(entry);
    }

    /// Cancels the slot's operations of kind `op` (e.g. a multishot
    /// receive); the cancelled operation still completes (`-ECANCELED`).
    /// Submitted at once (one system call): a multishot receive keeps
    /// filling buffers at line rate until the cancel lands, so it must not
    /// wait for the end of the loop iteration. Rare: only when a client
    /// stops keeping up.
    pub fn cancel(&mut self, op: Op, slot: u32, generation: u32) {
        let target = user_data(op, slot, generation);
        let entry = opcode::AsyncCancel::new(target)
            .build()
            .user_data(user_data(Op::Cancel, slot, generation));
        self.start(entry);
        self.submit();
    }

    /// Polls `fd` (the AF_XDP socket) for input, one shot.
    pub fn poll_readable(&mut self, fd: RawFd) {
        let entry = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
            .build()
            .user_data(user_data(Op::PollXsk, 0, 0));
        self.start(entry);
    }

    /// Hands queued entries to the kernel (no syscall when none are
    /// queued); publishes recycled buffers.
    pub fn submit(&mut self) {
        self.publish_buffers();
        if self.ring.submission().is_empty() {
            return;
        }
        if let Err(e) = self.ring.submit() {
            if e.raw_os_error() != Some(libc::EBUSY) && e.raw_os_error() != Some(libc::EINTR) {
                tracing::warn!("io_uring submit: {e}");
            }
        }
    }

    /// Submits and sleeps until a completion arrives or `timeout` passes.
    pub fn wait(&mut self, timeout: Duration) {
        self.publish_buffers();
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

    /// Moves up to `out.capacity()` completions into `out` (cleared first).
    pub fn complete(&mut self, out: &mut Vec<Completion>) {
        out.clear();
        let room = out.capacity().max(1);
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            let Some(token) = Token::decode(cqe.user_data()) else {
                self.foreign_completions += 1;
                continue;
            };
            let more = cqueue::more(cqe.flags());
            if !more {
                self.in_flight -= 1;
            }
            out.push(Completion {
                token,
                result: cqe.result(),
                buffer: cqueue::buffer_select(cqe.flags()),
                more,
            });
            if out.len() >= room {
                break;
            }
        }
    }

    /// The first `len` bytes of provided buffer `bid`.
    pub fn buffer(&self, bid: u16, len: usize) -> &[u8] {
        self.buffers.bytes(bid, len)
    }

    /// Gives provided buffer `bid` back to the kernel (published at the
    /// next submit or wait).
    pub fn recycle(&mut self, bid: u16) {
        self.buffers.push(bid);
        self.recycled += 1;
    }

    fn publish_buffers(&mut self) {
        if self.recycled > 0 {
            self.buffers.publish();
            self.recycled = 0;
        }
    }

    /// Waits (bounded) for every operation in flight to complete, feeding
    /// completions to `on_completion`; used at shutdown after the caller
    /// has cancelled or closed everything.
    pub fn drain(
        &mut self,
        deadline: Duration,
        mut on_completion: impl FnMut(&mut Self, Completion),
    ) {
        let start = std::time::Instant::now();
        let mut batch = Vec::with_capacity(256);
        while self.in_flight > 0 && start.elapsed() < deadline {
            self.wait(Duration::from_millis(10));
            self.complete(&mut batch);
            for completion in batch.drain(..) {
                on_completion(self, completion);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::{AsRawFd, IntoRawFd};

    static TIMEOUT: types::Timespec = types::Timespec::new().sec(2);

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
    struct Waiter(std::collections::VecDeque<Completion>);

    impl Waiter {
        fn next(&mut self, uring: &mut Uring, op: Op) -> Completion {
            let mut out = Vec::with_capacity(16);
            for _ in 0..500 {
                if let Some(i) = self.0.iter().position(|c| c.token.op == op) {
                    return self.0.remove(i).unwrap();
                }
                uring.wait(Duration::from_millis(10));
                uring.complete(&mut out);
                self.0.extend(out.drain(..));
            }
            panic!("no {op:?} completion");
        }
    }

    /// A ring of `entries` with `buffers` provided buffers of `size` bytes,
    /// and a waiter for its completions.
    fn ring(entries: u32, buffers: u16, size: u32) -> (Uring, Waiter) {
        let uring = Uring::new(UringConfig {
            entries,
            buffers,
            buffer_size: size,
        })
        .unwrap();
        (uring, Waiter(Default::default()))
    }

    /// A blocking TCP socket and the loopback address of `port` (boxed: it
    /// must stay put until the connect completes).
    fn loopback_socket(port: u16) -> (RawFd, Box<libc::sockaddr_in>) {
        // Safety (test): plain socket(2).
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0) };
        assert!(fd >= 0);
        let addr = crate::upstream::socket::sockaddr(std::net::SocketAddrV4::new(
            std::net::Ipv4Addr::LOCALHOST,
            port,
        ));
        (fd, Box::new(addr))
    }

    /// Loopback kernel sockets: connect with a linked timeout, multishot
    /// receive into provided buffers, send, then (after a shutdown) close.
    #[test]
    fn connect_send_receive_multishot_shutdown_close() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let (mut uring, mut waiter) = ring(64, 8, 4096);
        let (fd, addr) = loopback_socket(port);
        // Safety: `addr` lives until the end of the test.
        unsafe { uring.connect(fd, &*addr, 7, 1, &TIMEOUT) };
        uring.submit();
        let done = waiter.next(&mut uring, Op::Connect);
        assert_eq!(done.result, 0, "connect");
        assert_eq!((done.token.slot, done.token.generation), (7, 1));
        let (mut server, _) = listener.accept().unwrap();

        uring.recv_multishot(fd, 7, 1, 0);
        let mut received = Vec::new();
        for round in 0..3u8 {
            server.write_all(&[round; 5000]).unwrap();
            while received.len() < 5000 * (round as usize + 1) {
                let c = waiter.next(&mut uring, Op::Recv);
                assert!(c.more, "multishot stays armed");
                let bid = c.buffer.expect("a provided buffer");
                received.extend_from_slice(uring.buffer(bid, c.result as usize));
                uring.recycle(bid);
            }
        }
        assert_eq!(received.len(), 15000);
        assert!(received[..5000].iter().all(|&b| b == 0));
        assert!(received[10000..].iter().all(|&b| b == 2));

        let data = b"hello backend".to_vec();
        // Safety: `data` outlives the completion awaited below.
        unsafe { uring.send(fd, data.as_ptr(), data.len(), 7, 1) };
        assert_eq!(waiter.next(&mut uring, Op::Send).result, data.len() as i32);
        crate::upstream::socket::shutdown_write(fd);
        let mut got = Vec::new();
        server.read_to_end(&mut got).unwrap();
        assert_eq!(got, data, "data then EOF");
        drop(server);
        let eof = waiter.next(&mut uring, Op::Recv);
        assert_eq!((eof.result, eof.more), (0, false), "EOF ends the multishot");
        uring.close(fd, 7, 1);
        assert_eq!(waiter.next(&mut uring, Op::Close).result, 0);
        let mut rest = Vec::with_capacity(8);
        uring.complete(&mut rest);
        assert_eq!(uring.in_flight(), 0, "{rest:?}");
    }

    /// A limited multishot receive ends (without `more`) once it has
    /// delivered its limit (to within one buffer), leaving the rest in the
    /// socket.
    #[test]
    fn a_multishot_receive_stops_at_its_limit() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let (mut uring, mut waiter) = ring(16, 16, 1024);
        server.write_all(&[5u8; 10_000]).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        uring.recv_multishot(client.as_raw_fd(), 1, 1, 3000);
        let mut got = 0;
        loop {
            let c = waiter.next(&mut uring, Op::Recv);
            assert!(c.result > 0, "{c:?}");
            got += c.result as usize;
            uring.recycle(c.buffer.unwrap());
            if !c.more {
                break;
            }
        }
        // The kernel checks the limit after each buffer: it stops within
        // one buffer past it.
        assert!((3000..3000 + 1024).contains(&got), "stopped at {got}");
        assert_eq!(uring.in_flight(), 0);
    }

    /// A connect to an address that never answers ends at the linked
    /// timeout with -ECANCELED.
    #[test]
    fn connect_timeout_cancels_the_connect() {
        // A listener with a backlog of 0 that is never accepted would still
        // complete handshakes; an unroutable-but-local blackhole is needed:
        // TEST-NET is not allowed here, so use a listening socket whose SYNs
        // are dropped by filling its accept queue.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // Safety (test): listen(2) with backlog 0 on our own socket.
        unsafe { libc::listen(listener.as_raw_fd(), 0) };
        let mut fillers = Vec::new();
        for _ in 0..4 {
            if let Ok(s) = TcpStream::connect_timeout(
                &format!("127.0.0.1:{port}").parse().unwrap(),
                Duration::from_millis(200),
            ) {
                fillers.push(s.into_raw_fd());
            }
        }
        static SHORT: types::Timespec = types::Timespec::new().nsec(300_000_000);
        let (mut uring, mut waiter) = ring(16, 2, 1024);
        let (fd, addr) = loopback_socket(port);
        let started = std::time::Instant::now();
        // Safety: `addr` lives until the end of the test.
        unsafe { uring.connect(fd, &*addr, 1, 1, &SHORT) };
        uring.submit();
        let done = waiter.next(&mut uring, Op::Connect);
        assert_eq!(done.result, -libc::ECANCELED, "timed out");
        assert!(started.elapsed() < Duration::from_secs(2));
        // Safety (test): close our fds.
        unsafe {
            libc::close(fd);
            for f in fillers {
                libc::close(f);
            }
        }
    }
}
