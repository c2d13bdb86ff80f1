//! What nginx calls for a request: the gate, after or in the access phase ([`access`]), and the content
//! handlers of the room's own locations ([`api`], [`status`], [`control`]); the header filter
//! that carries out the origin's commands ([`origin`]). Each is a thin translation
//! between the request and the room's service; none lets a panic unwind into nginx.

pub mod access;
pub mod api;
pub mod control;
mod edge;
pub mod inject;
pub mod origin;
mod page;
pub mod status;
