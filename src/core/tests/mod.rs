//! Unit and property tests of the core.

mod image;
mod room;
mod token;
