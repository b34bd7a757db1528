//! What a GitHub delivery is, decided without a socket: the signature check over the raw body,
//! the closed `Event` enum a payload parses into, and the `Route` that says what it means.

pub mod event;
pub mod route;
pub mod signature;
