//! What a GitHub delivery is, decided without a socket: the signature check over the raw body
//! and the closed `Event` enum a payload parses into.

pub mod event;
pub mod signature;
