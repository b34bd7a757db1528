//! What a GitHub delivery is, decided without a socket: the signature check over the raw body,
//! the closed `Event` enum a payload parses into, the `Route` that says what it means, and the
//! `lane` it waits in for the worker.

pub mod event;
pub mod lane;
pub mod route;
pub mod signature;
