//! Image references, checked against the distribution grammar that Docker and OCI
//! registries use (github.com/distribution/reference):
//! `[registry[:port]/]path[:tag][@algorithm:hex]`.
//!
//! Parsed by hand rather than with oci-spec's `Reference`, which compiles the grammar
//! into a regular expression: built once and kept, it held 7 MB, more than everything
//! else an idle `launchway server` with 1,000 apps keeps.

/// The longest name (registry and path) registries accept.
const NAME_MAX: usize = 255;
/// The longest tag.
const TAG_MAX: usize = 128;
/// The shortest digest, in hex digits (128 bits).
const DIGEST_HEX_MIN: usize = 32;

/// A reference split into its parts; only built from a valid reference.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ImageReference<'a> {
    pub registry: Option<&'a str>,
    pub path: &'a str,
    pub tag: Option<&'a str>,
    pub digest: Option<&'a str>,
}

/// Checks that `reference` is an image reference a container engine would accept:
/// `[registry[:port]/]repository[:tag][@digest]`, lowercase repository.
pub(crate) fn check(reference: &str) -> Result<(), String> {
    parse(reference).map(|_| ())
}

pub(crate) fn parse(reference: &str) -> Result<ImageReference<'_>, String> {
    if reference.trim() != reference || reference.is_empty() {
        return Err("it is empty or has surrounding spaces".to_owned());
    }
    let (name_and_tag, digest) = match reference.split_once('@') {
        Some((name_and_tag, digest)) => (name_and_tag, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest
        && !is_digest(digest)
    {
        return Err(format!("the digest {digest:?} is not ALGORITHM:HEX with at least {DIGEST_HEX_MIN} hex digits"));
    }
    // A tag follows the last colon after the last slash; earlier colons are a port's.
    let last_component_start = name_and_tag.rfind('/').map_or(0, |slash| slash + 1);
    let (name, tag) = match name_and_tag[last_component_start..].rfind(':') {
        Some(colon) => {
            let colon = last_component_start + colon;
            (&name_and_tag[..colon], Some(&name_and_tag[colon + 1..]))
        }
        None => (name_and_tag, None),
    };
    if let Some(tag) = tag
        && !is_tag(tag)
    {
        return Err(format!(
            "the tag {tag:?} is not 1 to {TAG_MAX} letters, digits, '_', '.' or '-' starting with a letter, digit or '_'"
        ));
    }
    if name.len() > NAME_MAX {
        return Err(format!("the name is longer than {NAME_MAX} characters"));
    }
    // Capitals in the first component make it a registry too: a path cannot have them.
    if let Some((first, path)) = name.split_once('/')
        && (looks_like_a_host(first) || first.bytes().any(|b| b.is_ascii_uppercase()))
    {
        if is_registry(first) && is_path(path) {
            return Ok(ImageReference { registry: Some(first), path, tag, digest });
        }
    } else if is_path(name) {
        return Ok(ImageReference { registry: None, path: name, tag, digest });
    }
    if repository_has_uppercase(name) {
        Err("repository names must be lowercase".to_owned())
    } else {
        Err(format!(
            "{name:?} is not [registry[:port]/]path, a path being components of lowercase letters and digits \
             separated by '/', with '.', '_', '__' or dashes inside a component"
        ))
    }
}

/// `host[:port]`: a domain name, an IPv4 address or a bracketed IPv6 address.
fn is_registry(registry: &str) -> bool {
    let (host, port) = match registry.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') && (host.starts_with('[') == host.ends_with(']')) => {
            (host, Some(port))
        }
        _ => (registry, None),
    };
    if port.is_some_and(|port| port.is_empty() || !port.bytes().all(|byte| byte.is_ascii_digit())) {
        return false;
    }
    match host.strip_prefix('[').and_then(|rest| rest.strip_suffix(']')) {
        Some(ipv6) => !ipv6.is_empty() && ipv6.bytes().all(|byte| byte.is_ascii_hexdigit() || byte == b':'),
        None => host.split('.').all(is_domain_component),
    }
}

/// Letters, digits and dashes, not starting or ending with a dash.
fn is_domain_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    !bytes.is_empty()
        && bytes.iter().all(|byte| byte.is_ascii_alphanumeric() || *byte == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

/// Components separated by slashes.
fn is_path(path: &str) -> bool {
    path.split('/').all(is_path_component)
}

/// Runs of lowercase letters and digits joined by one `.`, one or two `_`, or any
/// number of `-`.
fn is_path_component(component: &str) -> bool {
    let is_alphanumeric = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    component.starts_with(is_alphanumeric)
        && component.ends_with(is_alphanumeric)
        && component
            .split(is_alphanumeric)
            .all(|separator| matches!(separator, "" | "." | "_" | "__") || separator.bytes().all(|byte| byte == b'-'))
}

/// A word character followed by up to 127 word characters, dots and dashes.
fn is_tag(tag: &str) -> bool {
    let is_word = |byte: &u8| byte.is_ascii_alphanumeric() || *byte == b'_';
    let bytes = tag.as_bytes();
    bytes.first().is_some_and(is_word)
        && bytes.len() <= TAG_MAX
        && bytes.iter().all(|byte| is_word(byte) || matches!(byte, b'.' | b'-'))
}

/// `algorithm:hex`, the algorithm being letter-led alphanumeric parts joined by
/// `+`, `.`, `_` or `-`.
fn is_digest(digest: &str) -> bool {
    let Some((algorithm, hex)) = digest.split_once(':') else {
        return false;
    };
    let algorithm_ok = algorithm.split(['+', '.', '_', '-']).all(|part| {
        part.bytes().next().is_some_and(|byte| byte.is_ascii_alphabetic())
            && part.bytes().all(|byte| byte.is_ascii_alphanumeric())
    });
    algorithm_ok && hex.len() >= DIGEST_HEX_MIN && hex.bytes().all(|byte| byte.is_ascii_hexdigit())
}

/// Whether a name's first component is a registry host, as engines read it: it has a
/// dot or a port, or is `localhost`.
fn looks_like_a_host(first: &str) -> bool {
    first.contains(['.', ':']) || first == "localhost"
}

/// Whether the part of a reference between the registry and the tag has capitals
/// (a registry host may have them).
fn repository_has_uppercase(name: &str) -> bool {
    let repository = match name.split_once('/') {
        Some((first, rest)) if looks_like_a_host(first) => rest,
        _ => name,
    };
    repository.bytes().any(|byte| byte.is_ascii_uppercase())
}

/// Whether the reference pins nothing: no tag (so `latest`) or the `latest` tag itself.
/// Such images change under the same name, so launchway cannot see a new release.
pub(crate) fn is_floating(reference: &str) -> bool {
    match parse(reference) {
        Ok(parsed) => parsed.digest.is_none() && matches!(parsed.tag, None | Some("latest")),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_reference_forms_engines_accept() {
        for reference in [
            "nginx",
            "nginx:1.27",
            "library/nginx:1.27-alpine",
            "registry.example.com:5000/team/api:v1.2.3",
            "123456789012.dkr.ecr.ap-northeast-1.amazonaws.com/web:dev-3f9a1c2",
            "ghcr.io/org/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ] {
            assert_eq!(check(reference), Ok(()), "{reference}");
        }
    }

    #[test]
    fn refuses_malformed_references() {
        for reference in ["", " nginx", "Nginx:1", "nginx:", "nginx::1", "web:v1 extra", "a/b:c@sha256:zz"] {
            assert!(check(reference).is_err(), "{reference:?} should be refused");
        }
    }

    #[test]
    fn path_components_allow_the_grammars_separators_only_inside() {
        for path in ["a.b", "a_b", "a__b", "a-b", "a---b", "x/a.b-c__d/e", "0"] {
            assert_eq!(check(path), Ok(()), "{path}");
        }
        for path in ["a..b", "a___b", "a_-b", "-a", "a.", "a//b", "a/", "/a", "a b", "é"] {
            assert!(check(path).is_err(), "{path:?} should be refused");
        }
    }

    #[test]
    fn a_registry_may_have_a_port_capitals_or_an_ip_address() {
        for reference in [
            "localhost:5000/app:1",
            "Registry.Example.com/team/app",
            "127.0.0.1:5000/app",
            "[::1]:5000/app",
            "[fe80::1]/app",
        ] {
            assert_eq!(check(reference), Ok(()), "{reference}");
        }
        for reference in ["a_b.c/app", "host:/app", "host:50a0/app", "-host/app", "[zz]/app", "localhost:5000/App"] {
            assert!(check(reference).is_err(), "{reference:?} should be refused");
        }
        assert_eq!(check("localhost:5000/App"), Err("repository names must be lowercase".to_owned()));
    }

    #[test]
    fn the_parts_are_told_apart() {
        assert_eq!(
            parse("registry:5000/team/app:v1@sha256:0123456789abcdef0123456789abcdef"),
            Ok(ImageReference {
                registry: Some("registry:5000"),
                path: "team/app",
                tag: Some("v1"),
                digest: Some("sha256:0123456789abcdef0123456789abcdef"),
            })
        );
        assert_eq!(parse("team/app"), Ok(ImageReference { registry: None, path: "team/app", tag: None, digest: None }));
    }

    #[test]
    fn tags_and_digests_have_bounds() {
        let longest_tag = format!("app:{}", "t".repeat(128));
        assert_eq!(check(&longest_tag), Ok(()));
        assert!(check(&format!("{longest_tag}t")).is_err());
        assert!(check("app:.hidden").is_err());
        assert!(check("app:_ok.1-2").is_ok());
        assert!(check("app@sha256:0123456789abcdef0123456789abcde").is_err(), "31 hex digits");
        assert!(check("app@sha256+b64u.x:0123456789abcdef0123456789abcdef").is_ok());
        assert!(check("app@1sha:0123456789abcdef0123456789abcdef").is_err());
        assert!(check(&format!("{}/app", "a".repeat(252))).is_err(), "over 255 characters");
    }

    #[test]
    fn untagged_and_latest_images_are_floating() {
        assert!(is_floating("nginx"));
        assert!(is_floating("nginx:latest"));
        assert!(!is_floating("nginx:1.27"));
        assert!(!is_floating("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    }
}
