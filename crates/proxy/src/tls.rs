//! TLS on route ports: one server configuration per port whose routes carry a
//! certificate, choosing each connection's certificate by the name the client asks for
//! (SNI): the route naming that host, else the port's route for any host.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::routes::{Route, RouteTable};

/// The server configuration of each port that serves TLS.
pub(crate) type PortConfigs = HashMap<u16, Arc<ServerConfig>>;

/// The TLS configuration of every port of `table`, or what is wrong with it: a
/// certificate or key that does not parse or match, or a port where some routes have
/// TLS and others do not.
pub(crate) fn configs(table: &RouteTable) -> Result<PortConfigs, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut by_port: HashMap<u16, Vec<&Route>> = HashMap::new();
    for route in &table.routes {
        by_port.entry(route.port).or_default().push(route);
    }
    let mut configs = PortConfigs::new();
    for (port, routes) in by_port {
        let with_tls = routes.iter().filter(|route| route.tls.is_some()).count();
        if with_tls == 0 {
            continue;
        }
        if with_tls != routes.len() {
            let plain: Vec<&str> =
                routes.iter().filter(|route| route.tls.is_none()).map(|route| route.name.as_str()).collect();
            return Err(format!("port {port} serves TLS, but route {} has no certificate", plain.join(", ")));
        }
        let mut certificates = PortCertificates::default();
        for route in routes {
            let key = certified_key(route, &provider)?;
            match &route.host {
                Some(host) => {
                    certificates.by_host.insert(host.to_ascii_lowercase(), key);
                }
                None => certificates.any_host = Some(key),
            }
        }
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|error| error.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(certificates));
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        configs.insert(port, Arc::new(config));
    }
    Ok(configs)
}

fn certified_key(route: &Route, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, String> {
    let Some(tls) = &route.tls else { return Err(format!("route {} has no certificate", route.name)) };
    let chain = CertificateDer::pem_slice_iter(tls.certificate_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("route {}: the certificate is not PEM: {error}", route.name))?;
    if chain.is_empty() {
        return Err(format!("route {}: no certificate in the certificate file", route.name));
    }
    let key = PrivateKeyDer::from_pem_slice(tls.key_pem.as_bytes())
        .map_err(|error| format!("route {}: the key is not a PEM private key: {error}", route.name))?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| format!("route {}: the key cannot sign: {error}", route.name))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|error| format!("route {}: the key does not match the certificate: {error}", route.name))?;
    Ok(Arc::new(certified))
}

/// A port's certificates, by host name.
#[derive(Debug, Default)]
struct PortCertificates {
    by_host: HashMap<String, Arc<CertifiedKey>>,
    any_host: Option<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for PortCertificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let asked = hello.server_name().map(str::to_ascii_lowercase);
        asked.and_then(|name| self.by_host.get(&name).cloned()).or_else(|| self.any_host.clone())
    }
}
