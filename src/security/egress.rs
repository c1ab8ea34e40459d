//! Where outgoing webhook connections may go (API.md §3 `webhook_url`,
//! issue 18 M6). A `webhook_url` is checked when it is set, but a name can
//! resolve elsewhere later (DNS rebinding), so the webhook client resolves
//! through [`GuardedResolver`], which refuses every address of
//! [`EgressPolicy::refuses`] *at connect time*: the address reqwest connects to
//! is one this filter let through. URLs with a literal IP (which skip the
//! resolver) are checked with the same policy before sending.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
    time::Duration,
};

use futures::future::BoxFuture;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// What the egress filter lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EgressPolicy {
    /// Sandbox mode: loopback receivers (tests, a developer's machine) are allowed.
    pub allow_loopback: bool,
}

impl EgressPolicy {
    pub fn for_mode(sandbox: bool) -> EgressPolicy {
        EgressPolicy { allow_loopback: sandbox }
    }

    /// Whether a connection to `ip` is refused: loopback (outside sandbox),
    /// private, link-local (cloud metadata 169.254.169.254), unique-local,
    /// carrier-grade NAT (100.64/10, also Alibaba's metadata address),
    /// unspecified, broadcast, multicast, reserved and documentation ranges,
    /// and IPv6 forms that embed such an IPv4 address.
    pub fn refuses(self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => self.refuses_v4(v4),
            IpAddr::V6(v6) => self.refuses_v6(v6),
        }
    }

    fn refuses_v4(self, v4: Ipv4Addr) -> bool {
        let [a, b, c, _] = v4.octets();
        if v4.is_loopback() {
            return !self.allow_loopback;
        }
        a == 0 // "this network", 0.0.0.0/8
            || v4.is_private() // 10/8, 172.16/12, 192.168/16
            || v4.is_link_local() // 169.254/16: metadata services
            || (a == 100 && (b & 0xc0) == 64) // 100.64/10 carrier-grade NAT
            || (a == 192 && b == 0 && c == 0) // 192.0.0/24 IETF protocol assignments
            || (a == 192 && b == 0 && c == 2) // documentation
            || (a == 198 && (b & 0xfe) == 18) // 198.18/15 benchmarking
            || (a == 198 && b == 51 && c == 100) // documentation
            || (a == 203 && b == 0 && c == 113) // documentation
            || v4.is_multicast() // 224/4
            || a >= 240 // 240/4 reserved and the broadcast address
    }

    fn refuses_v6(self, v6: Ipv6Addr) -> bool {
        if v6.is_loopback() {
            return !self.allow_loopback;
        }
        if let Some(v4) = v6.to_ipv4_mapped() {
            return self.refuses_v4(v4); // ::ffff:a.b.c.d
        }
        let s = v6.segments();
        let embedded_v4 = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
        v6.is_unspecified()
            || v6.is_multicast() // ff00::/8
            || (s[0] & 0xfe00) == 0xfc00 // fc00::/7 unique local (AWS metadata fd00:ec2::254)
            || (s[0] & 0xffc0) == 0xfe80 // fe80::/10 link local
            || (s[0] & 0xffc0) == 0xfec0 // fec0::/10 site local (deprecated)
            || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
            || (s[0] == 0x0064 && s[1] == 0xff9b && self.refuses_v4(embedded_v4(s[6], s[7]))) // NAT64
            || (s[0] == 0x2002 && self.refuses_v4(embedded_v4(s[1], s[2]))) // 6to4
            || (s[..6] == [0; 6] && self.refuses_v4(embedded_v4(s[6], s[7]))) // ::a.b.c.d (deprecated)
    }
}

/// Why a webhook connection was not made (found in reqwest's error chain).
#[derive(Debug, thiserror::Error)]
pub enum EgressRefused {
    #[error("the webhook host resolves to a refused address (loopback, private, link-local or reserved)")]
    Refused,
    #[error("the webhook host does not resolve")]
    NoAddress,
}

/// How names are looked up; the system resolver in the service, a table in tests.
pub trait Lookup: Send + Sync + 'static {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>>;
}

/// The operating system's resolver (`getaddrinfo` on a blocking thread).
pub struct SystemLookup;

impl Lookup for SystemLookup {
    fn lookup(&self, host: String) -> BoxFuture<'static, std::io::Result<Vec<SocketAddr>>> {
        Box::pin(async move { Ok(tokio::net::lookup_host((host.as_str(), 0)).await?.collect()) })
    }
}

/// A reqwest resolver that hands reqwest only addresses [`EgressPolicy`]
/// allows. If any address of the name is refused, the whole name is refused
/// (a name that mixes public and internal answers is a rebinding attempt).
pub struct GuardedResolver<L> {
    policy: EgressPolicy,
    lookup: L,
}

/// Bound on one lookup, below the attempt timeout.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

impl<L: Lookup> GuardedResolver<L> {
    pub fn new(policy: EgressPolicy, lookup: L) -> Arc<GuardedResolver<L>> {
        Arc::new(GuardedResolver { policy, lookup })
    }

    /// The addresses of `host` the policy allows, or why there are none.
    fn allowed(&self, host: String) -> BoxFuture<'static, Result<Vec<SocketAddr>, EgressRefused>> {
        let policy = self.policy;
        let pending = self.lookup.lookup(host);
        Box::pin(async move {
            let found = match tokio::time::timeout(LOOKUP_TIMEOUT, pending).await {
                Ok(Ok(found)) => found,
                Ok(Err(_)) | Err(_) => return Err(EgressRefused::NoAddress),
            };
            if found.is_empty() {
                return Err(EgressRefused::NoAddress);
            }
            if found.iter().any(|a| policy.refuses(a.ip())) {
                return Err(EgressRefused::Refused);
            }
            Ok(found)
        })
    }
}

impl<L: Lookup> Resolve for GuardedResolver<L> {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.allowed(name.as_str().to_owned());
        Box::pin(async move {
            let found = allowed.await?;
            Ok(Box::new(found.into_iter()) as Addrs)
        })
    }
}

/// Whether `error` (a reqwest error) came from the egress filter, and why.
pub fn refusal_in<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a EgressRefused> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(refused) = e.downcast_ref::<EgressRefused>() {
            return Some(refused);
        }
        current = e.source();
    }
    None
}

#[cfg(test)]
mod tests;
