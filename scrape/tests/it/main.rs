//! Integration tests for strata-scrape: real config files, a real HTTP
//! server on 127.0.0.1, and a real `Db` in a temporary directory.

mod config;
mod manager;
mod scrape;
mod tls;
mod util;
