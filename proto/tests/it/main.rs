//! strata-proto integration tests: one binary (see ARCHITECTURE.md).

mod grpc;
mod wire;
