//! TCP options: RFC 9293 §3.2 (EOL, NOP, MSS), RFC 7323 §2–3 (window scale,
//! timestamps), RFC 2018 §2–3 (SACK-permitted, SACK blocks).
//!
//! Parsing walks kind/length pairs and always advances by at least one byte,
//! so it terminates on any input. Unknown kinds are skipped by their length;
//! a length that is below 2, runs past the option space, or does not match a
//! known option's fixed size is [`Error::Malformed`].

use super::{read_u16, read_u32, write_u16, write_u32, Error, Result};

mod kind {
    pub const END_OF_LIST: u8 = 0;
    pub const NO_OPERATION: u8 = 1;
    pub const MAX_SEGMENT_SIZE: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// Most option space a TCP header can hold: 60 − 20 bytes.
pub const MAX_OPTIONS_LEN: usize = 40;
/// Most SACK blocks an option can carry (2 + 4 × 8 = 34 ≤ 40, RFC 2018 §3).
pub const MAX_SACK_BLOCKS: usize = 4;

/// RFC 7323 §3.2: TSval and TSecr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Timestamps {
    pub tsval: u32,
    pub tsecr: u32,
}

/// One option as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    EndOfList,
    NoOperation,
    MaxSegmentSize(u16),
    WindowScale(u8),
    SackPermitted,
    /// The raw blocks: 1..=4 pairs of (left edge, right edge), 8 bytes each.
    Sack(&'a [u8]),
    Timestamps(Timestamps),
    Unknown {
        kind: u8,
        data: &'a [u8],
    },
}

/// Iterates over the options of a header. Yields `Err` once on a malformed
/// option and then stops; stops after `EndOfList`.
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptionIter<'a> {
    pub fn new(options: &'a [u8]) -> Self {
        Self { rest: options }
    }

    fn next_option(&mut self) -> Result<TcpOption<'a>> {
        let bytes = self.rest;
        let option_kind = bytes[0];
        match option_kind {
            kind::END_OF_LIST => {
                self.rest = &[];
                return Ok(TcpOption::EndOfList);
            }
            kind::NO_OPERATION => {
                self.rest = &bytes[1..];
                return Ok(TcpOption::NoOperation);
            }
            _ => {}
        }
        let len = usize::from(*bytes.get(1).ok_or(Error::Malformed)?);
        if len < 2 || len > bytes.len() {
            return Err(Error::Malformed);
        }
        let data = &bytes[2..len];
        self.rest = &bytes[len..];
        let option = match (option_kind, data.len()) {
            (kind::MAX_SEGMENT_SIZE, 2) => TcpOption::MaxSegmentSize(read_u16(data, 0)),
            (kind::WINDOW_SCALE, 1) => TcpOption::WindowScale(data[0]),
            (kind::SACK_PERMITTED, 0) => TcpOption::SackPermitted,
            (kind::SACK, n) if (8..=8 * MAX_SACK_BLOCKS).contains(&n) && n % 8 == 0 => {
                TcpOption::Sack(data)
            }
            (kind::TIMESTAMPS, 8) => TcpOption::Timestamps(Timestamps {
                tsval: read_u32(data, 0),
                tsecr: read_u32(data, 4),
            }),
            (
                kind::MAX_SEGMENT_SIZE
                | kind::WINDOW_SCALE
                | kind::SACK_PERMITTED
                | kind::SACK
                | kind::TIMESTAMPS,
                _,
            ) => return Err(Error::Malformed),
            (other, _) => TcpOption::Unknown { kind: other, data },
        };
        Ok(option)
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = Result<TcpOption<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.next_option();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

/// Up to four SACK blocks (RFC 2018 §3), each `(left, right)`: the left edge
/// is the first sequence number of a received block, the right edge the one
/// after its last.
#[derive(Debug, Clone, Copy, Default)]
pub struct SackBlocks {
    blocks: [(u32, u32); MAX_SACK_BLOCKS],
    len: u8,
}

impl SackBlocks {
    /// No blocks.
    pub const EMPTY: Self = Self {
        blocks: [(0, 0); MAX_SACK_BLOCKS],
        len: 0,
    };

    /// Appends a block; returns false (and drops it) when four are held.
    pub fn push(&mut self, left: u32, right: u32) -> bool {
        let len = usize::from(self.len);
        if len == MAX_SACK_BLOCKS {
            return false;
        }
        self.blocks[len] = (left, right);
        self.len += 1;
        true
    }

    pub fn as_slice(&self) -> &[(u32, u32)] {
        &self.blocks[..usize::from(self.len)]
    }

    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn from_wire(data: &[u8]) -> Self {
        let mut blocks = Self::default();
        for pair in data.chunks_exact(8) {
            blocks.push(read_u32(pair, 0), read_u32(pair, 4));
        }
        blocks
    }

    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len as u8);
    }
}

/// The options we understand, gathered from a header. When an option appears
/// twice the last one wins (as in Linux `tcp_parse_options`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpOptions {
    /// RFC 9293 §3.7.1: only meaningful on SYN segments.
    pub mss: Option<u16>,
    /// RFC 7323 §2.2: the shift count as sent (values above 14 are the
    /// engine's to clamp, RFC 7323 §2.3).
    pub window_scale: Option<u8>,
    /// RFC 2018 §2.
    pub sack_permitted: bool,
    /// RFC 7323 §3.2.
    pub timestamps: Option<Timestamps>,
    /// RFC 2018 §3.
    pub sack_blocks: SackBlocks,
}

impl TcpOptions {
    /// Gathers the known options from raw option bytes.
    pub fn parse(options: &[u8]) -> Result<Self> {
        let mut parsed = Self::default();
        for option in TcpOptionIter::new(options) {
            match option? {
                TcpOption::MaxSegmentSize(mss) => parsed.mss = Some(mss),
                TcpOption::WindowScale(shift) => parsed.window_scale = Some(shift),
                TcpOption::SackPermitted => parsed.sack_permitted = true,
                TcpOption::Sack(data) => parsed.sack_blocks = SackBlocks::from_wire(data),
                TcpOption::Timestamps(ts) => parsed.timestamps = Some(ts),
                TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
            }
        }
        Ok(parsed)
    }

    /// SACK blocks that fit beside the other options in 40 bytes (RFC 2018
    /// §3: three with timestamps, four without).
    fn sack_blocks_that_fit(&self) -> usize {
        let fixed = self.len_without_sack();
        let room = MAX_OPTIONS_LEN.saturating_sub(fixed + 4) / 8;
        self.sack_blocks.len().min(room)
    }

    fn len_without_sack(&self) -> usize {
        let mut len = 0;
        if self.mss.is_some() {
            len += 4;
        }
        // SACK-permitted + timestamps share one 12-byte word-aligned group;
        // either alone is padded with two NOPs.
        len += match (self.sack_permitted, self.timestamps.is_some()) {
            (_, true) => 12,
            (true, false) => 4,
            (false, false) => 0,
        };
        if self.window_scale.is_some() {
            len += 4;
        }
        len
    }

    /// Bytes [`emit`](Self::emit) writes: a multiple of 4, at most 40.
    pub fn buffer_len(&self) -> usize {
        let sack = self.sack_blocks_that_fit();
        self.len_without_sack() + if sack > 0 { 4 + 8 * sack } else { 0 }
    }

    /// Writes the options in Linux's order and padding (MSS; SACK-permitted
    /// and timestamps; NOP + window scale; NOP NOP + SACK blocks), so that
    /// every option is word aligned. Returns the bytes written.
    pub fn emit(&self, out: &mut [u8]) -> usize {
        let mut at = 0;
        if let Some(mss) = self.mss {
            out[at] = kind::MAX_SEGMENT_SIZE;
            out[at + 1] = 4;
            write_u16(out, at + 2, mss);
            at += 4;
        }
        match (self.sack_permitted, self.timestamps) {
            (true, Some(ts)) => {
                out[at] = kind::SACK_PERMITTED;
                out[at + 1] = 2;
                at += 2;
                at += emit_timestamps(&mut out[at..], ts);
            }
            (false, Some(ts)) => {
                out[at] = kind::NO_OPERATION;
                out[at + 1] = kind::NO_OPERATION;
                at += 2;
                at += emit_timestamps(&mut out[at..], ts);
            }
            (true, None) => {
                out[at..at + 4].copy_from_slice(&[
                    kind::NO_OPERATION,
                    kind::NO_OPERATION,
                    kind::SACK_PERMITTED,
                    2,
                ]);
                at += 4;
            }
            (false, None) => {}
        }
        if let Some(shift) = self.window_scale {
            out[at..at + 4].copy_from_slice(&[kind::NO_OPERATION, kind::WINDOW_SCALE, 3, shift]);
            at += 4;
        }
        let mut sack = self.sack_blocks;
        sack.truncate(self.sack_blocks_that_fit());
        if !sack.is_empty() {
            out[at] = kind::NO_OPERATION;
            out[at + 1] = kind::NO_OPERATION;
            out[at + 2] = kind::SACK;
            out[at + 3] = (2 + 8 * sack.len()) as u8;
            at += 4;
            for &(left, right) in sack.as_slice() {
                write_u32(out, at, left);
                write_u32(out, at + 4, right);
                at += 8;
            }
        }
        at
    }

    /// The options as [`emit`](Self::emit) will write them (SACK blocks that
    /// do not fit dropped): what a parse of the emitted bytes returns.
    pub fn as_emitted(&self) -> Self {
        let mut emitted = *self;
        emitted.sack_blocks.truncate(self.sack_blocks_that_fit());
        emitted
    }
}

/// Two block lists are equal when the blocks they hold are: slots past `len`
/// are scratch space.
impl PartialEq for SackBlocks {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SackBlocks {}

impl core::hash::Hash for SackBlocks {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

fn emit_timestamps(out: &mut [u8], ts: Timestamps) -> usize {
    out[0] = kind::TIMESTAMPS;
    out[1] = 10;
    write_u32(out, 2, ts.tsval);
    write_u32(out, 6, ts.tsecr);
    10
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_linux_syn_options() {
        // From wire::captured::TCP_SYN: mss 1460, sackOK, TS, nop, wscale 10.
        let bytes = [
            0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x8d, 0x93, 0xea, 0xde, 0x00, 0x00,
            0x00, 0x00, 0x01, 0x03, 0x03, 0x0a,
        ];
        let options: Vec<_> = TcpOptionIter::new(&bytes).collect::<Result<_>>().unwrap();
        assert_eq!(
            options,
            [
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamps(Timestamps {
                    tsval: 2375281374,
                    tsecr: 0
                }),
                TcpOption::NoOperation,
                TcpOption::WindowScale(10),
            ]
        );
        let parsed = TcpOptions::parse(&bytes).unwrap();
        let mut out = [0u8; 40];
        let len = parsed.emit(&mut out);
        assert_eq!(&out[..len], &bytes, "emit uses Linux's layout");
        assert_eq!(parsed.buffer_len(), len);
    }

    #[test]
    fn unknown_options_are_skipped_by_length() {
        // kind 30 (MPTCP) with 4 data bytes, then MSS.
        let bytes = [30, 6, 1, 2, 3, 4, 2, 4, 0x05, 0xb4];
        let parsed = TcpOptions::parse(&bytes).unwrap();
        assert_eq!(parsed.mss, Some(1460));
        let first = TcpOptionIter::new(&bytes).next().unwrap().unwrap();
        assert_eq!(
            first,
            TcpOption::Unknown {
                kind: 30,
                data: &[1, 2, 3, 4]
            }
        );
    }

    #[test]
    fn end_of_list_stops_parsing() {
        let bytes = [1, 0, 2, 4, 0x05, 0xb4];
        assert_eq!(TcpOptions::parse(&bytes).unwrap().mss, None);
    }

    #[test]
    fn malformed_lengths_are_errors() {
        let cases: &[&[u8]] = &[
            &[2],                         // kind without a length byte
            &[30, 0],                     // length 0 would loop forever
            &[30, 1],                     // length 1 is below the minimum
            &[30, 5, 0, 0],               // runs past the option space
            &[2, 3, 5],                   // MSS must be 4 bytes
            &[3, 4, 7, 0],                // window scale must be 3 bytes
            &[4, 3, 0],                   // SACK-permitted must be 2 bytes
            &[8, 9, 0, 0, 0, 0, 0, 0, 0], // timestamps must be 10 bytes
            &[5, 2],                      // SACK with no block
            &[5, 6, 0, 0, 0, 0],          // SACK not a multiple of 8
        ];
        for bytes in cases {
            assert_eq!(TcpOptions::parse(bytes), Err(Error::Malformed), "{bytes:?}");
            let mut iter = TcpOptionIter::new(bytes);
            assert!(iter.any(|o| o.is_err()));
            assert!(iter.next().is_none(), "the iterator stops after an error");
        }
    }

    #[test]
    fn sack_blocks_fit_beside_timestamps() {
        let mut options = TcpOptions {
            timestamps: Some(Timestamps { tsval: 1, tsecr: 2 }),
            ..Default::default()
        };
        for i in 0..4 {
            options.sack_blocks.push(i * 100, i * 100 + 10);
        }
        // RFC 2018 §3: with timestamps only three blocks fit.
        assert_eq!(options.buffer_len(), 12 + 4 + 3 * 8);
        let mut out = [0u8; 40];
        let len = options.emit(&mut out);
        assert_eq!(len, 40);
        let parsed = TcpOptions::parse(&out[..len]).unwrap();
        assert_eq!(
            parsed.sack_blocks.as_slice(),
            &options.sack_blocks.as_slice()[..3]
        );
        options.timestamps = None;
        assert_eq!(options.buffer_len(), 4 + 4 * 8);
    }

    fn arb_options() -> impl Strategy<Value = TcpOptions> {
        (
            proptest::option::of(any::<u16>()),
            proptest::option::of(any::<u8>()),
            any::<bool>(),
            proptest::option::of(any::<(u32, u32)>()),
            proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
        )
            .prop_map(|(mss, ws, sack_ok, ts, blocks)| {
                let mut options = TcpOptions {
                    mss,
                    window_scale: ws,
                    sack_permitted: sack_ok,
                    timestamps: ts.map(|(tsval, tsecr)| Timestamps { tsval, tsecr }),
                    ..Default::default()
                };
                for (l, r) in blocks {
                    options.sack_blocks.push(l, r);
                }
                options
            })
    }

    proptest! {
        #[test]
        fn emit_then_parse_round_trips(options in arb_options()) {
            let mut out = [0u8; 40];
            let len = options.emit(&mut out);
            prop_assert_eq!(len, options.buffer_len());
            prop_assert!(len <= MAX_OPTIONS_LEN && len % 4 == 0);
            prop_assert_eq!(TcpOptions::parse(&out[..len]).unwrap(), options.as_emitted());
        }

        #[test]
        fn arbitrary_bytes_terminate_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let count = TcpOptionIter::new(&bytes).count();
            prop_assert!(count <= bytes.len());
            let _ = TcpOptions::parse(&bytes);
        }
    }
}
