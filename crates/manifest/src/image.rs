//! Image references, checked with the OCI distribution grammar.

use std::str::FromStr;

use oci_spec::distribution::Reference;

/// Checks that `reference` is an image reference a container engine would accept:
/// `[registry[:port]/]repository[:tag][@digest]`, lowercase repository.
pub(crate) fn check(reference: &str) -> Result<(), String> {
    if reference.trim() != reference || reference.is_empty() {
        return Err("it is empty or has surrounding spaces".to_owned());
    }
    Reference::from_str(reference).map(|_| ()).map_err(|error| {
        // The grammar's own message is "invalid reference format" for most mistakes;
        // the commonest one deserves a plainer explanation.
        if repository_has_uppercase(reference) {
            "repository names must be lowercase".to_owned()
        } else {
            error.to_string()
        }
    })
}

/// Whether the part of a reference between the registry and the tag has capitals.
fn repository_has_uppercase(reference: &str) -> bool {
    let name = reference.split('@').next().unwrap_or_default();
    let (path, last) = name.rsplit_once('/').unwrap_or(("", name));
    let last = last.split(':').next().unwrap_or_default();
    // A first component with a dot or colon is a registry host, where case is allowed.
    let mut components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if components.first().is_some_and(|first| first.contains(['.', ':']) || *first == "localhost") {
        components.remove(0);
    }
    components.push(last);
    components.iter().any(|component| component.chars().any(|c| c.is_ascii_uppercase()))
}

/// Whether the reference pins nothing: no tag (so `latest`) or the `latest` tag itself.
/// Such images change under the same name, so launchway cannot see a new release.
pub(crate) fn is_floating(reference: &str) -> bool {
    let Ok(parsed) = Reference::from_str(reference) else {
        return false;
    };
    if parsed.digest().is_some() {
        return false;
    }
    // Reference fills in `latest` when no tag is written.
    matches!(parsed.tag(), None | Some("latest"))
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
    fn untagged_and_latest_images_are_floating() {
        assert!(is_floating("nginx"));
        assert!(is_floating("nginx:latest"));
        assert!(!is_floating("nginx:1.27"));
        assert!(!is_floating("nginx@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"));
    }
}
