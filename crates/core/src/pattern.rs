//! The test byte stream: what the `source` service sends and what the
//! tests send and check (byte for byte, so a lost, duplicated or reordered
//! byte shows at its offset). Re-exported by the test kit; here because
//! the product's `source` service sends it too.

/// The byte at offset `i` of stream `stream` (different streams, e.g.
/// the two directions of a connection, differ at most offsets).
pub fn byte(stream: u8, i: u64) -> u8 {
    ((i.wrapping_mul(2_654_435_761) >> 13) as u8) ^ stream.wrapping_mul(0x5b)
}

/// Fills `out` with stream `stream` from offset `start`.
pub fn fill(stream: u8, start: u64, out: &mut [u8]) {
    for (k, b) in out.iter_mut().enumerate() {
        *b = byte(stream, start + k as u64);
    }
}

/// The first offset in `got` (which starts at offset `start` of stream
/// `stream`) that differs from the stream, if any.
pub fn mismatch(stream: u8, start: u64, got: &[u8]) -> Option<u64> {
    got.iter()
        .enumerate()
        .find(|&(k, &b)| b != byte(stream, start + k as u64))
        .map(|(k, _)| start + k as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_differ_and_mismatches_are_found() {
        let mut a = [0u8; 4096];
        fill(0, 100, &mut a);
        assert_eq!(mismatch(0, 100, &a), None);
        assert_eq!(mismatch(1, 100, &a).map(|at| at < 110), Some(true));
        a[1000] ^= 1;
        assert_eq!(mismatch(0, 100, &a), Some(1100));
    }
}
