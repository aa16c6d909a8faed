//! `--grpc-server-tls-{cert,key,client-ca}`: the gRPC server TLS flags of
//! every subcommand that serves the StoreAPI (Thanos' names), parsed once.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use strata_querier::GrpcServerTls;

#[derive(Args, Debug)]
pub struct GrpcServerTlsArgs {
    /// TLS certificate of the gRPC server; no TLS when unset.
    #[arg(long = "grpc-server-tls-cert")]
    cert: Option<PathBuf>,
    /// TLS key of the gRPC server.
    #[arg(long = "grpc-server-tls-key")]
    key: Option<PathBuf>,
    /// CA that client certificates must chain to (enables mutual TLS).
    #[arg(long = "grpc-server-tls-client-ca")]
    client_ca: Option<PathBuf>,
}

impl GrpcServerTlsArgs {
    /// The TLS material, read from the files; `None` without the flags.
    pub fn load(&self) -> Result<Option<GrpcServerTls>> {
        match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Ok(Some(
                GrpcServerTls::from_files(cert, key, self.client_ca.as_deref())
                    .context("gRPC server TLS")?,
            )),
            (None, None) if self.client_ca.is_none() => Ok(None),
            _ => bail!("--grpc-server-tls-cert and --grpc-server-tls-key must be set together (and are required by --grpc-server-tls-client-ca)"),
        }
    }
}
