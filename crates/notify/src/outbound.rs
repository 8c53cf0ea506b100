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
            if let Some(v4) = v6.to_ipv4_mapped() {
                return forbidden(IpAddr::V4(v4));
            }
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.is_unspecified()
                || v6 == std::net::Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
        }
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
            "http://0.0.0.0:8080/",
        ] {
            assert!(refused(&open, url).is_some(), "{url}");
        }
        assert!(refused(&open, "file:///etc/passwd").unwrap().contains("only http and https"));
        for url in ["https://hooks.slack.com/services/T0/B0/x", "http://127.0.0.1:9000/hook", "http://10.0.0.7/"] {
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
