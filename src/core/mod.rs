//! The waiting room's logic, with no nginx in it: how a room's state is laid out as plain data
//! (`layout`), its state machine (`room`), the Fenwick tree behind positions (`fenwick`), the
//! counters and pace behind the estimate, the wait histogram and the history (`stats`), the
//! status location's formats and Prometheus text (`metrics`), the signed cookie (`token`),
//! exempt links (`link`), reading a
//! `Cookie` header (`cookie`), what kind of request it is (`request`) and small helpers for the nginx side's edges (`guard`).
//! Everything here is tested by `cargo test` without starting nginx.
//!
//! Time comes in as arguments: monotonic milliseconds (nginx's `ngx_current_msec`, the same in
//! every process of a host and never stepped) for every duration, and wall-clock seconds only
//! for the dates in tokens.

pub mod control;
pub mod cookie;
pub mod fenwick;
pub mod guard;
pub mod image;
pub mod layout;
pub mod link;
pub mod metrics;
pub mod request;
pub mod room;
pub mod stats;
pub mod token;

#[cfg(test)]
mod tests;
