//! SRV lookups for `dnssrv+_name._tcp.domain` endpoints.
//!
//! Uses hickory-resolver configured from `/etc/resolv.conf` (name servers,
//! search domains, `ndots`), the way Go's resolver reads it for Thanos. The
//! resolver is built on first use so a querier without `dnssrv+` endpoints
//! never reads the file. Each SRV target is resolved to its A/AAAA
//! addresses and combined with the SRV port, as Thanos' `dnssrv+` does.

use hickory_resolver::TokioResolver;
use tokio::sync::OnceCell;

/// Lazily built system resolver.
#[derive(Default)]
pub struct SrvResolver {
    resolver: OnceCell<Result<TokioResolver, String>>,
}

impl SrvResolver {
    pub fn new() -> Self {
        Self::default()
    }

    async fn resolver(&self) -> Result<&TokioResolver, String> {
        self.resolver
            .get_or_init(|| async {
                TokioResolver::builder_tokio()
                    .map(|b| b.build())
                    .map_err(|e| format!("reading the system DNS configuration: {e}"))
            })
            .await
            .as_ref()
            .map_err(Clone::clone)
    }

    /// `ip:port` for every address of every SRV target of `name`.
    pub async fn resolve(&self, name: &str) -> Result<Vec<String>, String> {
        let r = self.resolver().await?;
        let srv = r
            .srv_lookup(name)
            .await
            .map_err(|e| format!("SRV lookup of {name}: {e}"))?;
        let mut out = Vec::new();
        for rec in srv.iter() {
            let target = rec.target().to_utf8();
            let ips = r
                .lookup_ip(target.as_str())
                .await
                .map_err(|e| format!("looking up SRV target {target} of {name}: {e}"))?;
            for ip in ips.iter() {
                out.push(std::net::SocketAddr::new(ip, rec.port()).to_string());
            }
            if out.len() > crate::endpoints::MAX_ENDPOINTS {
                break;
            }
        }
        Ok(out)
    }
}
