//! Unit and property tests of the core.

mod room;
mod token;
