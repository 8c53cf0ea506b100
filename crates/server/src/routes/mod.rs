//! The HTTP API's routes, by what they are about, on what `http.rs` shares. (The
//! router and the other routes are still in `api.rs`.)

pub(crate) mod live;
pub(crate) mod sessions;
pub(crate) mod slack;
