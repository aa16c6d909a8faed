//! DNS lookups for `dnssrv+_name._tcp.domain` and `dns+host:port` endpoints.
//!
//! [`DnsResolver`] is hickory-resolver configured from `/etc/resolv.conf`
//! (name servers, search domains, `ndots`), the way Go's resolver reads it
//! for Thanos, or, when [`DnsResolver::with_server`] names one, a single
//! name server reached over UDP/TCP with no search domains and no answer
//! cache. The latter is what `strata query`'s hidden
//! `--store.sd-dns-resolver-address` flag sets (Thanos has no such flag; it
//! exists so tests can run their own DNS server). The resolver is built on
//! first use, so a querier without DNS endpoints never reads the file.
//!
//! - SRV: each target is resolved to its A/AAAA addresses and combined with
//!   the SRV port, as Thanos' `dnssrv+` does.
//! - As in Thanos (`pkg/discovery/dns/resolver.go`), "no such name" and "no
//!   records" are an empty answer, not an error: the endpoints go away. Any
//!   other failure is an error, and the caller keeps its last answer.
//! - `dns+` uses the operating system's resolver (`getaddrinfo`, as Go's
//!   default resolver does for Thanos) unless a server is configured, in
//!   which case it asks that server for A/AAAA records.

use std::net::SocketAddr;

use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
use hickory_resolver::name_server::TokioConnectionProvider;
use hickory_resolver::TokioResolver;
use tokio::sync::OnceCell;

/// Lazily built resolver; see the module docs.
#[derive(Default)]
pub struct DnsResolver {
    server: Option<SocketAddr>,
    resolver: OnceCell<Result<TokioResolver, String>>,
}

impl DnsResolver {
    /// The system's resolver configuration.
    pub fn new() -> Self {
        Self::default()
    }

    /// One name server instead of the system's configuration.
    pub fn with_server(server: Option<SocketAddr>) -> Self {
        DnsResolver {
            server,
            resolver: OnceCell::new(),
        }
    }

    async fn resolver(&self) -> Result<&TokioResolver, String> {
        self.resolver
            .get_or_init(|| async {
                match self.server {
                    None => TokioResolver::builder_tokio()
                        .map(|b| b.build())
                        .map_err(|e| format!("reading the system DNS configuration: {e}")),
                    Some(addr) => {
                        let servers =
                            NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                        let config = ResolverConfig::from_parts(None, Vec::new(), servers);
                        let mut b = TokioResolver::builder_with_config(
                            config,
                            TokioConnectionProvider::default(),
                        );
                        // Records change under the querier (that is what
                        // the re-resolution interval is for): do not let a
                        // TTL hide the change.
                        b.options_mut().cache_size = 0;
                        Ok(b.build())
                    }
                }
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `ip:port` for every address of every SRV target of `name`.
    pub async fn resolve_srv(&self, name: &str) -> Result<Vec<String>, String> {
        let r = self.resolver().await?;
        let srv = match r.srv_lookup(name).await {
            Ok(srv) => srv,
            Err(e) if e.is_no_records_found() => {
                tracing::warn!(name, error = %e, "SRV lookup found no records");
                return Ok(Vec::new());
            }
            Err(e) => return Err(format!("SRV lookup of {name}: {e}")),
        };
        let mut out = Vec::new();
        for rec in srv.iter() {
            let target = rec.target().to_utf8();
            let ips = match r.lookup_ip(target.as_str()).await {
                Ok(ips) => ips,
                Err(e) if e.is_no_records_found() => {
                    tracing::warn!(name, target, error = %e, "SRV target has no addresses");
                    continue;
                }
                Err(e) => return Err(format!("looking up SRV target {target} of {name}: {e}")),
            };
            for ip in ips.iter() {
                out.push(SocketAddr::new(ip, rec.port()).to_string());
            }
            if out.len() > crate::endpoints::MAX_ENDPOINTS {
                break;
            }
        }
        Ok(out)
    }

    /// `ip:port` for every address of `host` (`dns+host:port`).
    pub async fn resolve_host(&self, host: &str, port: u16) -> Result<Vec<String>, String> {
        if self.server.is_none() {
            let target = format!("{host}:{port}");
            let addrs = tokio::net::lookup_host(target.as_str())
                .await
                .map_err(|e| format!("looking up {target}: {e}"))?;
            return Ok(addrs.map(|a| a.to_string()).collect());
        }
        let r = self.resolver().await?;
        let ips = match r.lookup_ip(host).await {
            Ok(ips) => ips,
            Err(e) if e.is_no_records_found() => {
                tracing::warn!(host, error = %e, "address lookup found no records");
                return Ok(Vec::new());
            }
            Err(e) => return Err(format!("looking up {host}: {e}")),
        };
        Ok(ips
            .iter()
            .take(crate::endpoints::MAX_ENDPOINTS)
            .map(|ip| SocketAddr::new(ip, port).to_string())
            .collect())
    }
}
