//! Integration tests for the tsdb crate (one binary, see ARCHITECTURE.md).
