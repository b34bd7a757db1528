//! The one error classification of every effect: a [`Failure`] is transient (another try may
//! succeed: a timeout, a rate limit, a 5xx, a lost push race) or permanent (it will not: a
//! refusal, a bad request, a conflict with someone else's change), with what was being done and
//! the cause kept as text.
//!
//! Each adapter decides the class of its errors once, where it sees the wire (status codes, git
//! error codes); callers read [`Failure::is_transient`] and never re-derive it. An adapter whose
//! errors carry more detail than a message (the git writer's conflict, the model's rate limit)
//! keeps its own error type and implements [`Classified`] for it, so the retry policy
//! (`crate::retry`) and the conversion into a `Failure` read one classification.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// Whether another try may succeed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// The same request may succeed later (rate limit, server error, timeout, lost race).
    Transient,
    /// The same request cannot succeed (refused, invalid, not found, conflicting).
    Permanent,
}

/// What an effect could not do, classified. The text never carries a secret: adapters build
/// `cause` from status lines and messages, never from URLs with credentials or tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub class: Class,
    /// What was being done ("listing files of o/r#3"). Empty when `cause` already says it, as
    /// for the shell's own refusals ("service \"x\" is not in the configuration").
    pub doing: String,
    /// Why it failed, as the peer or the adapter put it.
    pub cause: String,
    /// How long the peer asked to wait before another try (`Retry-After`), when it said.
    pub retry_after: Option<Duration>,
}

impl Failure {
    pub fn new(class: Class, doing: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure {
            class,
            doing: doing.into(),
            cause: cause.into(),
            retry_after: None,
        }
    }

    pub fn transient(doing: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure::new(Class::Transient, doing, cause)
    }

    pub fn permanent(doing: impl Into<String>, cause: impl Into<String>) -> Failure {
        Failure::new(Class::Permanent, doing, cause)
    }

    /// A permanent failure whose reason already says what is wrong: the shell's own refusals
    /// ("service \"x\" is not in the configuration"), with no peer to name.
    pub fn refused(reason: impl Into<String>) -> Failure {
        Failure::new(Class::Permanent, "", reason)
    }

    /// The same failure with the wait the peer asked for.
    pub fn after(mut self, wait: Duration) -> Failure {
        self.retry_after = Some(wait);
        self
    }

    /// The same failure inside a larger task: `outer` goes before what was being done.
    pub fn context(mut self, outer: impl fmt::Display) -> Failure {
        self.doing = if self.doing.is_empty() {
            outer.to_string()
        } else {
            format!("{outer}: {}", self.doing)
        };
        self
    }

    pub fn is_transient(&self) -> bool {
        self.class == Class::Transient
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.doing.is_empty(), self.cause.is_empty()) {
            (true, _) => f.write_str(&self.cause),
            (false, true) => f.write_str(&self.doing),
            (false, false) => write!(f, "{}: {}", self.doing, self.cause),
        }
    }
}

impl std::error::Error for Failure {}

/// An error that knows its class: what the retry policy reads. Implemented once per adapter
/// error type, which is where the classification lives.
pub trait Classified {
    fn class(&self) -> Class;
    /// The wait the peer asked for before another try, if it named one.
    fn retry_after(&self) -> Option<Duration> {
        None
    }
}

impl Classified for Failure {
    fn class(&self) -> Class {
        self.class
    }

    fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }
}

/// What a port's async method returns: boxed so the ports can be used as trait objects.
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Failure>> + Send + 'a>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_joins_what_was_done_and_why() {
        let f = Failure::permanent("listing files of o/r#3", "HTTP 404: Not Found");
        assert_eq!(f.to_string(), "listing files of o/r#3: HTTP 404: Not Found");
        assert!(!f.is_transient());
        assert_eq!(
            Failure::transient("", "service \"x\" is gone").to_string(),
            "service \"x\" is gone"
        );
        let f = Failure::transient("querying p", "HTTP 503").context("errors query of track c");
        assert_eq!(
            f.to_string(),
            "errors query of track c: querying p: HTTP 503"
        );
        assert!(f.is_transient());
        let waited = Failure::transient("x", "HTTP 429").after(Duration::from_secs(2));
        assert_eq!(
            Classified::retry_after(&waited),
            Some(Duration::from_secs(2))
        );
    }
}
