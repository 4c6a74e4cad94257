//! Two stacks joined back to back with no delay and no loss: every
//! segment crosses as bytes and is parsed and checksummed, both engines'
//! work counted. The engine benchmarks' harness (`benches/tcp.rs`, and
//! `benches/engine_count.rs` under callgrind).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4};
use std::time::Duration;

use lastack_core::tcp::{Event, Instant, Route, Secret, Stack, Tag, TcpConfig};

use crate::sim::deliver_bytes;

/// The tag these connections carry in their events.
pub const TAG: Tag = Tag(1);

pub const SERVER: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80));
pub const SERVER6: SocketAddr = SocketAddr::V6(std::net::SocketAddrV6::new(
    Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
    80,
    0,
    0,
));

/// Two stacks and a shared segment buffer, with zero delay between them.
pub struct BackToBack {
    pub client: Stack,
    pub server: Stack,
    /// The server's address (its family is the connections').
    pub server_addr: SocketAddr,
    pub now: Instant,
    buf: Vec<u8>,
}

impl Default for BackToBack {
    fn default() -> Self {
        Self::new()
    }
}

impl BackToBack {
    /// A pair whose server listens on [`SERVER`] (IPv4).
    pub fn new() -> Self {
        Self::serving(SERVER)
    }

    /// A pair whose server listens on `server_addr`.
    pub fn serving(server_addr: SocketAddr) -> Self {
        let config = TcpConfig {
            time_wait: Duration::from_secs(1),
            send_buffer: 64 * 1024,
            recv_buffer: 64 * 1024,
            ..TcpConfig::default()
        };
        let mut server = Stack::new(config.clone(), Secret([1; 16]), 1 << 20);
        server.listen(server_addr).unwrap();
        Self {
            client: Stack::new(config, Secret([2; 16]), 1 << 20),
            server,
            server_addr,
            now: Instant::from_millis(1_000_000),
            buf: vec![0; 70_000],
        }
    }

    /// Moves segments both ways until neither side has anything to send.
    pub fn exchange(&mut self) -> usize {
        let mut moved = 0;
        loop {
            let mut any = false;
            while let Some(t) = self.client.poll_transmit(self.now, &mut self.buf) {
                deliver_bytes(&mut self.server, self.now, &self.buf[..t.len]);
                moved += 1;
                any = true;
            }
            while let Some(t) = self.server.poll_transmit(self.now, &mut self.buf) {
                deliver_bytes(&mut self.client, self.now, &self.buf[..t.len]);
                moved += 1;
                any = true;
            }
            if !any {
                return moved;
            }
        }
    }

    /// One connection: handshake, 64 bytes each way, the client closes
    /// first, the server follows. Returns segments exchanged.
    pub fn lifecycle(&mut self, n: u32) -> usize {
        let request = [0x51u8; 64];
        let mut scratch = [0u8; 128];
        let host = n & 0x00ff_ffff;
        let client = if self.server_addr.is_ipv6() {
            let ip = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, (host >> 16) as u16, host as u16);
            SocketAddr::new(ip.into(), 40000)
        } else {
            SocketAddr::new(Ipv4Addr::from(0x0a00_0000 | host).into(), 40000)
        };
        let id = self
            .client
            .connect(self.now, client, self.server_addr, Route::default(), TAG)
            .unwrap();
        let mut segments = self.exchange();
        let mut accepted = None;
        while let Some(event) = self.server.poll_event() {
            if let Event::Acceptable(l) = event {
                accepted = self.server.accept(l, TAG);
            }
        }
        while self.client.poll_event().is_some() {}
        let server_id = accepted.expect("accepted");
        self.client.send(self.now, id, &request).unwrap();
        segments += self.exchange();
        let got = self.server.recv(self.now, server_id, &mut scratch).unwrap();
        self.server
            .send(self.now, server_id, &scratch[..got])
            .unwrap();
        segments += self.exchange();
        self.client.recv(self.now, id, &mut scratch).unwrap();
        self.client.close(self.now, id).unwrap();
        segments += self.exchange();
        self.server.close(self.now, server_id).unwrap();
        segments += self.exchange();
        while self.server.poll_event().is_some() {}
        while self.client.poll_event().is_some() {}
        // 10 µs of virtual time per connection; TIME-WAIT expires behind.
        self.now = self.now + Duration::from_micros(10);
        self.client.handle_timeout(self.now);
        self.server.handle_timeout(self.now);
        segments
    }
}
