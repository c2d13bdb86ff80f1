//! The waiting room's logic, with no nginx in it: the room's tables and state machine
//! (`room`), the Fenwick tree behind positions (`fenwick`) and the signed cookie (`token`).
//! Everything here is tested by `cargo test` without starting nginx.

pub mod fenwick;
pub mod room;
pub mod token;

#[cfg(test)]
mod tests;
