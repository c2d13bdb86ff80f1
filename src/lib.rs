//! ngx waiting room: a virtual waiting room for nginx.

pub mod core;
