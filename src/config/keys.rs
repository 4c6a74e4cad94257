//! The cluster's key file (`[cluster] key_file`): one 128-bit key per line
//! in hex, the first minting, the others honoured (see `tcp::keys`).
//! Errors name the line but never echo its text: it is a secret.

use std::path::Path;

use crate::tcp::Secret;

/// Most keys a file may hold: the minting one and three being rotated.
pub const MAX_CLUSTER_KEYS: usize = 4;

/// Reads the keys of the file at `path`, in order.
pub fn read_cluster_keys(path: &Path) -> Result<Vec<Secret>, String> {
    if !path.is_absolute() {
        return Err(format!(
            "expected an absolute path (a reload runs from wherever lastack was started), found {:?}",
            path.display().to_string()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read the key file {}: {e}", path.display()))?;
    parse_cluster_keys(&text).map_err(|e| format!("key file {}: {e}", path.display()))
}

/// The keys in `text` (see [`read_cluster_keys`]).
pub fn parse_cluster_keys(text: &str) -> Result<Vec<Secret>, String> {
    let mut keys = Vec::new();
    for (number, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let key = parse_key(line).ok_or_else(|| {
            format!(
                "line {}: expected 32 hex digits (a 128-bit key, e.g. from `openssl rand -hex 16`), found {} characters that are not one",
                number + 1,
                line.chars().count()
            )
        })?;
        if keys.contains(&key) {
            return Err(format!("line {}: the same key twice", number + 1));
        }
        keys.push(key);
    }
    if keys.is_empty() {
        return Err("expected at least one key (32 hex digits), found none".into());
    }
    if keys.len() > MAX_CLUSTER_KEYS {
        return Err(format!(
            "expected at most {MAX_CLUSTER_KEYS} keys (one minting, the rest being rotated), found {}",
            keys.len()
        ));
    }
    Ok(keys)
}

fn parse_key(hex: &str) -> Option<Secret> {
    if hex.len() != 32 || !hex.is_ascii() {
        return None;
    }
    let mut key = [0u8; 16];
    for (byte, pair) in key.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(Secret(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "00112233445566778899aabbccddeeff";
    const B: &str = "ffeeddccbbaa99887766554433221100";

    #[test]
    fn keys_are_read_in_order_skipping_comments_and_blanks() {
        let keys =
            parse_cluster_keys(&format!("# rotated 2026-12-02\n\n{B}  # new\n{A}\n")).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].0[0], 0xff);
        assert_eq!(
            keys[1].0,
            [
                0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
                0xee, 0xff
            ]
        );
    }

    #[test]
    fn a_bad_line_is_named_without_echoing_it() {
        let error = parse_cluster_keys(&format!("{A}\nsecretbutshort\n")).unwrap_err();
        assert!(
            error.starts_with("line 2: expected 32 hex digits"),
            "{error}"
        );
        assert!(!error.contains("secretbutshort"), "{error}");
        let error = parse_cluster_keys(&format!("{}zz\n", &A[..30])).unwrap_err();
        assert!(error.starts_with("line 1:"), "{error}");
    }

    #[test]
    fn empty_doubled_and_crowded_files_are_refused() {
        assert!(parse_cluster_keys("# nothing\n")
            .unwrap_err()
            .contains("at least one key"));
        assert!(parse_cluster_keys(&format!("{A}\n{A}\n"))
            .unwrap_err()
            .contains("line 2: the same key twice"));
        let five: String = (0..5).map(|i| format!("{:032x}\n", i + 1)).collect();
        assert!(parse_cluster_keys(&five).unwrap_err().contains("at most 4"));
    }

    #[test]
    fn a_relative_path_is_refused() {
        let error = read_cluster_keys(Path::new("cluster.key")).unwrap_err();
        assert!(error.contains("absolute path"), "{error}");
    }
}
