//! The GitHub port: what deploybot reads from and writes to GitHub (pull requests, comments,
//! labels, statuses), and its octocrab adapter.
//!
//! (Being built under issue 4.)
