//! The backend side: pools, balancing, (later) the io_uring driver and
//! health checks. So far: [`balance`] and [`health`].

pub mod balance;
pub mod health;
