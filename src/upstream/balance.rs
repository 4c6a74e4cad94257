//! Choosing a backend: smooth weighted round robin, least connections per
//! weight, and Maglev consistent hashing on the client address.
//!
//! Every chooser skips backends that are down; `None` means none is up.
//! Choosing allocates nothing; building a Maglev table does (on a health
//! or config change, not per connection).

use core::hash::Hasher;
use std::net::IpAddr;

use siphasher::sip::SipHasher13;

/// What a chooser knows about a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendState {
    /// Relative share, at least 1.
    pub weight: u32,
    /// Up: may get new connections.
    pub up: bool,
    /// Connections open now (for least-connections).
    pub active: u32,
}

/// Smooth weighted round robin (as nginx does it): each pick adds every
/// weight to its backend's counter, takes the largest, and subtracts the
/// total from it. Over any `sum(weights)` picks each backend gets exactly
/// its weight, spread out rather than in runs.
#[derive(Debug, Clone, Default)]
pub struct RoundRobin {
    current: Vec<i64>,
}

impl RoundRobin {
    pub fn pick(&mut self, backends: &[BackendState]) -> Option<usize> {
        self.current.resize(backends.len(), 0);
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, backend) in backends.iter().enumerate() {
            if !backend.up {
                continue;
            }
            self.current[i] += i64::from(backend.weight);
            total += i64::from(backend.weight);
            if best.is_none_or(|b| self.current[i] > self.current[b]) {
                best = Some(i);
            }
        }
        let chosen = best?;
        self.current[chosen] -= total;
        Some(chosen)
    }
}

/// The up backend with the fewest open connections per unit of weight;
/// ties go to the first (callers rotate `start` to spread them).
pub fn least_connections(backends: &[BackendState], start: usize) -> Option<usize> {
    let n = backends.len();
    (0..n)
        .map(|k| (start + k) % n.max(1))
        .filter(|&i| backends[i].up)
        // Compare active_a / weight_a < active_b / weight_b without division.
        .min_by(|&a, &b| {
            let lhs = u64::from(backends[a].active) * u64::from(backends[b].weight);
            let rhs = u64::from(backends[b].active) * u64::from(backends[a].weight);
            lhs.cmp(&rhs)
        })
}

/// A Maglev lookup table (Eisenbud et al., "Maglev: A Fast and Reliable
/// Software Network Load Balancer", NSDI 2016, §3.4): every slot names a
/// backend; each backend fills slots in the order of its own permutation,
/// so the table is balanced, and removing a backend changes mostly the
/// slots it held.
#[derive(Debug, Clone)]
pub struct Maglev {
    table: Vec<u32>,
}

/// Backends are named by a stable key (their address): the table depends
/// on names, not on their order in the config.
fn hash(key: &[u8], seed: u64) -> u64 {
    // A fixed key: every shard and every lastack instance must build the
    // same table for the same backends.
    let mut hasher = SipHasher13::new_with_keys(0x6c61_7374_6163_6b21, seed);
    hasher.write(key);
    hasher.finish()
}

/// The smallest prime `>= n`.
fn prime_at_least(n: usize) -> usize {
    let is_prime = |m: usize| m >= 2 && (2..).take_while(|d| d * d <= m).all(|d| m % d != 0);
    (n..).find(|&m| is_prime(m)).expect("primes are unbounded")
}

impl Maglev {
    /// Table size for `backends` backends: a prime of at least 100 per
    /// backend and at least 65,537 (the paper's size for small pools): the
    /// larger M is against N, the fewer other clients move when a backend
    /// goes (measured with 5 backends: 0.11 % at 65,537 slots, 2.2 % at 503).
    pub fn table_size(backends: usize) -> usize {
        prime_at_least((100 * backends).max(65_537))
    }

    /// Builds the table over the backends that are up; `names[i]` is
    /// backend i's stable key and `weights[i]` its weight (it takes that
    /// many turns per round). `None` if none is up.
    pub fn build(names: &[&[u8]], backends: &[BackendState]) -> Option<Self> {
        let up: Vec<usize> = (0..backends.len()).filter(|&i| backends[i].up).collect();
        if up.is_empty() {
            return None;
        }
        let m = Self::table_size(backends.len());
        // §3.4 pseudocode: offset = h1(name) mod M, skip = h2(name) mod (M-1) + 1,
        // permutation[j] = (offset + j * skip) mod M.
        let perms: Vec<(usize, usize)> = up
            .iter()
            .map(|&i| {
                let offset = (hash(names[i], 1) % m as u64) as usize;
                let skip = (hash(names[i], 2) % (m as u64 - 1)) as usize + 1;
                (offset, skip)
            })
            .collect();
        let mut next = vec![0usize; up.len()];
        let mut table = vec![u32::MAX; m];
        let mut filled = 0;
        'fill: loop {
            for (k, &i) in up.iter().enumerate() {
                for _ in 0..backends[i].weight.max(1) {
                    let (offset, skip) = perms[k];
                    let mut slot = (offset + next[k] * skip) % m;
                    while table[slot] != u32::MAX {
                        next[k] += 1;
                        slot = (offset + next[k] * skip) % m;
                    }
                    table[slot] = i as u32;
                    next[k] += 1;
                    filled += 1;
                    if filled == m {
                        break 'fill;
                    }
                }
            }
        }
        Some(Self { table })
    }

    /// The backend for a client address.
    pub fn pick(&self, client: IpAddr) -> usize {
        let key = match client {
            IpAddr::V4(a) => hash(&a.octets(), 3),
            IpAddr::V6(a) => hash(&a.octets(), 3),
        };
        let slot = key % self.table.len() as u64;
        self.table[slot as usize] as usize
    }

    pub fn len(&self) -> usize {
        self.table.len()
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(weights: &[u32]) -> Vec<BackendState> {
        weights
            .iter()
            .map(|&weight| BackendState {
                weight,
                up: true,
                active: 0,
            })
            .collect()
    }

    #[test]
    fn round_robin_is_weighted_and_smooth() {
        let backends = up(&[5, 1, 1]);
        let mut rr = RoundRobin::default();
        let picks: Vec<usize> = (0..7).map(|_| rr.pick(&backends).unwrap()).collect();
        // nginx's smooth sequence for 5:1:1: a a b a c a a.
        assert_eq!(picks, [0, 0, 1, 0, 2, 0, 0]);
        let mut counts = [0; 3];
        for _ in 0..700 {
            counts[rr.pick(&backends).unwrap()] += 1;
        }
        assert_eq!(counts, [500, 100, 100]);
    }

    #[test]
    fn down_backends_get_nothing() {
        let mut backends = up(&[1, 1, 1]);
        backends[1].up = false;
        let mut rr = RoundRobin::default();
        assert!((0..30).all(|_| rr.pick(&backends) != Some(1)));
        for b in &mut backends {
            b.up = false;
        }
        assert_eq!(rr.pick(&backends), None);
        assert_eq!(least_connections(&backends, 0), None);
        assert!(Maglev::build(&[b"a", b"b", b"c"], &backends).is_none());
    }

    #[test]
    fn least_connections_weighs_load_by_weight() {
        let mut backends = up(&[1, 3, 1]);
        backends[0].active = 2;
        backends[1].active = 5; // 5/3 < 2/1
        backends[2].active = 2;
        assert_eq!(least_connections(&backends, 0), Some(1));
        backends[1].active = 7; // 7/3 > 2/1: tie between 0 and 2, rotate
        assert_eq!(least_connections(&backends, 0), Some(0));
        assert_eq!(least_connections(&backends, 2), Some(2));
    }

    fn names(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("10.0.1.{}:8080", 10 + i).into_bytes())
            .collect()
    }

    #[test]
    fn maglev_table_is_a_big_prime_and_balanced() {
        let keys = names(5);
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let table = Maglev::build(&refs, &up(&[1; 5])).unwrap();
        assert_eq!(
            table.len(),
            65_537,
            "a prime, at least 100 per backend and 65,537"
        );
        assert_eq!(
            Maglev::table_size(1000),
            100_003,
            "the first prime >= 100,000"
        );
        let mut counts = [0usize; 5];
        for slot in &table.table {
            counts[*slot as usize] += 1;
        }
        for &c in &counts {
            assert!(c.abs_diff(65_537 / 5) <= 1, "slots per backend {counts:?}");
        }
    }

    #[test]
    fn maglev_keeps_clients_and_moves_only_the_removed_backends_share() {
        let keys = names(5);
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let mut backends = up(&[1; 5]);
        let before = Maglev::build(&refs, &backends).unwrap();
        let clients: Vec<IpAddr> = (0..20_000u32)
            .map(|i| std::net::Ipv4Addr::from(0xc0a8_0000 + i * 7).into())
            .collect();
        for &c in &clients {
            assert_eq!(before.pick(c), before.pick(c), "same client, same backend");
        }
        backends[2].up = false;
        let after = Maglev::build(&refs, &backends).unwrap();
        let (mut moved, mut on_removed) = (0, 0);
        for &c in &clients {
            let (a, b) = (before.pick(c), after.pick(c));
            assert_ne!(b, 2, "nobody lands on the removed backend");
            if a == 2 {
                on_removed += 1;
            } else if a != b {
                moved += 1;
            }
        }
        let share = on_removed as f64 / clients.len() as f64;
        assert!(
            (share - 0.20).abs() <= 0.02,
            "the removed backend held {share:.3}"
        );
        let disturbed = moved as f64 / clients.len() as f64;
        println!("removed backend's share {share:.4}; other clients moved {disturbed:.4}");
        assert!(
            disturbed <= 0.02,
            "{disturbed:.3} of the others' clients moved"
        );
    }

    #[test]
    fn maglev_weights_take_more_slots() {
        let keys = names(2);
        let refs: Vec<&[u8]> = keys.iter().map(|k| k.as_slice()).collect();
        let table = Maglev::build(&refs, &up(&[3, 1])).unwrap();
        let heavy = table.table.iter().filter(|&&b| b == 0).count();
        let share = heavy as f64 / table.len() as f64;
        assert!((share - 0.75).abs() < 0.02, "weight 3 of 4 took {share:.3}");
    }
}
