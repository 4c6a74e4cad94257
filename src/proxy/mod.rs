//! The proxy layer: what lastack sends and decides on the backend side of
//! each connection. So far: the PROXY protocol header ([`proxy_protocol`]);
//! the session splice, close policy and upstream come with the proxy issue.

pub mod proxy_protocol;
