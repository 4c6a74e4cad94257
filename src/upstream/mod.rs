//! The backend side: pools, balancing, (later) the io_uring driver and
//! health checks. So far: [`balance`].

pub mod balance;
