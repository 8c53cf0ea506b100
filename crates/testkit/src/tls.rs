//! Certificates for TLS tests: a CA of the test's own and a certificate it signed.

/// A certificate for one host name, signed by a fresh CA; all PEM.
pub struct TestCertificate {
    /// What clients trust.
    pub ca_pem: String,
    pub certificate_pem: String,
    pub key_pem: String,
}

impl TestCertificate {
    pub fn for_host(host: &str) -> TestCertificate {
        let ca_key = rcgen::KeyPair::generate().expect("CA key");
        let mut ca = rcgen::CertificateParams::new(Vec::new()).expect("CA params");
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_certificate = ca.self_signed(&ca_key).expect("CA certificate");
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().expect("key");
        let leaf = rcgen::CertificateParams::new(vec![host.to_owned()])
            .expect("params")
            .signed_by(&key, &issuer)
            .expect("certificate");
        TestCertificate { ca_pem: ca_certificate.pem(), certificate_pem: leaf.pem(), key_pem: key.serialize_pem() }
    }

    /// A client trusting only this certificate's CA, reaching `host` at `address`.
    pub fn client(&self, host: &str, address: std::net::SocketAddr) -> reqwest::Client {
        reqwest::Client::builder()
            .no_proxy()
            .tls_certs_only([reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).expect("PEM")])
            .resolve(host, address)
            .build()
            .expect("client")
    }
}
