//! Integration tests for strata-scrape: real config files, a real HTTP
//! server on 127.0.0.1, a real `Db` in a temporary directory, and a fake
//! Kubernetes API server (see `kubernetes`).

mod config;
mod kubernetes;
mod manager;
mod scrape;
mod tls;
mod util;
