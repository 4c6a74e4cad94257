//! The proxy layer: a session per accepted connection between our stack
//! (client side) and a backend socket (io_uring), the close policy, and the
//! PROXY protocol header.

pub mod driver;
pub mod proxy_protocol;
pub mod session;

pub use driver::{Proxy, ProxyListener, ProxyStats};
pub use session::Session;

use std::sync::Arc;

use crate::config::{Config, Service};
use crate::upstream::pool::{HealthBoard, ShardPool};
use crate::upstream::uring::UringConfig;

/// The proxy of shard `shard` of `shards` for `config`: one entry per
/// `service = "proxy"` listener, in config order (the order
/// [`crate::shard::Shard::new`] numbers them in). `None` if no listener
/// proxies.
pub fn for_shard(
    config: &Config,
    board: &Arc<HealthBoard>,
    shard: usize,
    shards: usize,
) -> std::io::Result<Option<Proxy>> {
    let listeners: Vec<ProxyListener> = config
        .listeners
        .iter()
        .filter(|l| l.service == Service::Proxy)
        .map(|l| ProxyListener {
            pool: l
                .pool
                .as_ref()
                .and_then(|name| config.pools.iter().position(|p| &p.name == name))
                .expect("validated: a proxy listener names a pool"),
            close_policy: l.close_policy,
            close_grace: *l.close_grace,
            grace_fallback: l.grace_fallback,
            idle_timeout: *l.idle_timeout,
            max_connections: l.max_connections.div_ceil(shards.max(1) as u32),
        })
        .collect();
    if listeners.is_empty() {
        return Ok(None);
    }
    let pools = config
        .pools
        .iter()
        .enumerate()
        .map(|(i, pool)| ShardPool::new(i, pool, shard, shards))
        .collect();
    Proxy::new(UringConfig::default(), Arc::clone(board), pools, listeners).map(Some)
}
