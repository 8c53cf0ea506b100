//! Where notifications may go.
//!
//! A notification URL comes from the config repo, which many people can change; the
//! server that sends it may run where link-local addresses answer with credentials (the
//! cloud metadata service at 169.254.169.254, ECS's task metadata at 169.254.170.2,
//! fd00:ec2::254). So: link-local, unspecified and broadcast addresses are never
//! contacted, whether written in the URL or returned by DNS (a resolver that drops them
//! sees every lookup, so a name pointed there later is caught too); redirects are not
//! followed; and an operator can allow only some hosts.

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Which hosts notifications may reach.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutboundPolicy {
    /// When not empty, the only hosts allowed: `hooks.slack.com`, or `*.example.com`
    /// for any name under it.
    pub allow: Vec<String>,
}

impl OutboundPolicy {
    /// Why `url` may not be contacted, if it may not.
    pub fn refuse(&self, url: &reqwest::Url) -> Option<String> {
        if !matches!(url.scheme(), "http" | "https") {
            return Some(format!("only http and https are sent to, not {}", url.scheme()));
        }
        let Some(host) = url.host() else {
            return Some("the URL has no host".to_owned());
        };
        let (name, literal) = match host {
            url::Host::Domain(name) => (name.to_ascii_lowercase(), None),
            url::Host::Ipv4(address) => (address.to_string(), Some(IpAddr::V4(address))),
            url::Host::Ipv6(address) => (address.to_string(), Some(IpAddr::V6(address))),
        };
        if let Some(address) = literal.filter(|address| forbidden(*address)) {
            return Some(format!("{address} is a link-local or unspecified address, which launchway never contacts"));
        }
        if !self.allow.is_empty() && !self.allow.iter().any(|pattern| host_matches(pattern, &name)) {
            return Some(format!("{name} is not among the hosts notifications may go to"));
        }
        None
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim().to_ascii_lowercase();
    match pattern.strip_prefix("*.") {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(&format!(".{suffix}")),
        None => host == pattern,
    }
}

/// Addresses no notification ever goes to: link-local (IPv4 169.254/16, where cloud
/// metadata services answer; IPv6 fe80::/10), AWS's IPv6 metadata address, unspecified
/// and broadcast. Loopback and private networks stay allowed: webhooks inside a
/// company network are normal, and `allow` narrows further.
pub(crate) fn forbidden(address: IpAddr) -> bool {
    match address {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast(),
        IpAddr::V6(v6) => {
            if let Some(v4) = embedded_ipv4(v6) {
                return forbidden(IpAddr::V4(v4));
            }
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
    }
}

/// The IPv4 address an IPv6 one carries, where a network may deliver it to that IPv4
/// address: mapped (`::ffff:a.b.c.d`), compatible (`::a.b.c.d`), the NAT64 well-known
/// prefix (`64:ff9b::/96`) and 6to4 (`2002:AABB:CCDD::/48`).
fn embedded_ipv4(v6: std::net::Ipv6Addr) -> Option<std::net::Ipv4Addr> {
    let segments = v6.segments();
    let last = |high: u16, low: u16| std::net::Ipv4Addr::from((u32::from(high) << 16) | u32::from(low));
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    match segments {
        [0, 0, 0, 0, 0, 0, high, low] if (high, low) != (0, 0) && (high, low) != (0, 1) => Some(last(high, low)),
        [0x64, 0xff9b, 0, 0, 0, 0, high, low] => Some(last(high, low)),
        [0x2002, high, low, ..] => Some(last(high, low)),
        _ => None,
    }
}

/// Resolves names as the system does, without the addresses [`forbidden`] names.
#[derive(Debug, Default)]
pub(crate) struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found.iter().copied().filter(|address| !forbidden(address.ip())).collect();
            if allowed.is_empty() && !found.is_empty() {
                return Err(format!("{host} resolves only to link-local or unspecified addresses").into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(policy: &OutboundPolicy, url: &str) -> Option<String> {
        policy.refuse(&reqwest::Url::parse(url).unwrap())
    }

    #[test]
    fn metadata_and_other_link_local_addresses_are_never_contacted() {
        let open = OutboundPolicy::default();
        for url in [
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "http://169.254.170.2/v2/credentials",
            "http://[fd00:ec2::254]/latest/meta-data/",
            "http://[fe80::1]/",
            "http://[::ffff:169.254.169.254]/",
            // Issue 22, item 8: an IPv4-compatible and a NAT64 spelling passed.
            "http://[::169.254.169.254]/",
            "http://[64:ff9b::a9fe:a9fe]/",
            "http://[2002:a9fe:a9fe::1]/",
            "http://0.0.0.0:8080/",
        ] {
            assert!(refused(&open, url).is_some(), "{url}");
        }
        assert!(refused(&open, "file:///etc/passwd").unwrap().contains("only http and https"));
        for url in [
            "https://hooks.slack.com/services/T0/B0/x",
            "http://127.0.0.1:9000/hook",
            "http://10.0.0.7/",
            "http://[::1]:9000/hook",
        ] {
            assert_eq!(refused(&open, url), None, "{url}");
        }
    }

    #[test]
    fn an_allow_list_admits_only_its_hosts() {
        let policy = OutboundPolicy { allow: vec!["hooks.slack.com".into(), "*.example.com".into()] };
        assert_eq!(refused(&policy, "https://hooks.slack.com/services/x"), None);
        assert_eq!(refused(&policy, "https://ops.example.com/launchway"), None);
        assert!(refused(&policy, "https://example.com/").is_some(), "the suffix pattern needs a name under it");
        assert!(refused(&policy, "https://evil.test/").unwrap().contains("is not among the hosts"));
        assert!(refused(&policy, "https://hooks.slack.com.evil.test/").is_some());
    }

    #[tokio::test]
    async fn names_are_resolved_without_forbidden_addresses() {
        let resolved: Vec<SocketAddr> =
            GuardedResolver.resolve("localhost".parse().unwrap()).await.expect("resolves").collect();
        assert!(!resolved.is_empty() && resolved.iter().all(|address| address.ip().is_loopback()));
    }
}
