//! Process metrics served at `/metrics` in the Prometheus text format.
