//! The OCI image-reference grammar: full references (`host[:port]/path[:tag][@digest]`) and
//! their canonical form, registry locations (`host[:port][/path]`, as in `IMAGE_REGISTRY` and
//! user-data `domain` keys), and the registries whose authentication the edge agent cannot do.

use std::fmt;

use crate::limits::clip;

/// A registry location: host, optional port, optional repository path prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    pub host: String,
    pub port: Option<u16>,
    pub path: Option<String>,
}

impl Domain {
    /// `host[:port]`, the part credentials are keyed by.
    pub fn authority(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.host),
            None => self.host.clone(),
        }
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.authority())?;
        if let Some(path) = &self.path {
            write!(f, "/{path}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("is empty")]
    Empty,
    #[error("has a scheme `{0}://`; give host[:port][/path] only")]
    Scheme(String),
    #[error("contains whitespace")]
    Whitespace,
    #[error("host `{0}` contains `_`, which DNS names do not allow")]
    Underscore(String),
    #[error("host `{0}` is not a valid DNS name or IP address")]
    Host(String),
    #[error("port `{0}` is not a number from 1 to 65535")]
    Port(String),
    #[error("path component `{0}` must be lowercase letters and digits separated by `.`, `_`, `__` or `-`")]
    Path(String),
    #[error("has a tag or digest; give the registry location only")]
    TagOrDigest,
}

/// Parse `host[:port][/path]`. A trailing `/` is ignored.
pub fn parse_domain(text: &str) -> Result<Domain, DomainError> {
    let text = text.trim_end_matches('/');
    if text.is_empty() {
        return Err(DomainError::Empty);
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(DomainError::Scheme(clip(scheme).into_owned()));
    }
    if text.contains(char::is_whitespace) {
        return Err(DomainError::Whitespace);
    }
    if text.contains('@') {
        return Err(DomainError::TagOrDigest);
    }
    let (authority, path) = match text.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (text, None),
    };
    let (host, port) = split_port(authority)?;
    check_host(host)?;
    if let Some(path) = path {
        for component in path.split('/') {
            if component.contains(':') {
                return Err(DomainError::TagOrDigest);
            }
            if !is_path_component(component) {
                return Err(DomainError::Path(clip(component).into_owned()));
            }
        }
    }
    Ok(Domain {
        host: host.to_string(),
        port,
        path: path.map(str::to_string),
    })
}

fn split_port(authority: &str) -> Result<(&str, Option<u16>), DomainError> {
    // [v6]:port
    if let Some(rest) = authority.strip_prefix('[') {
        let (inside, after) = rest
            .split_once(']')
            .ok_or_else(|| DomainError::Host(clip(authority).into_owned()))?;
        inside
            .parse::<std::net::Ipv6Addr>()
            .map_err(|_| DomainError::Host(clip(authority).into_owned()))?;
        let port = match after.strip_prefix(':') {
            Some(p) => Some(parse_port(p)?),
            None if after.is_empty() => None,
            None => return Err(DomainError::Host(clip(authority).into_owned())),
        };
        return Ok((&authority[..inside.len() + 2], port));
    }
    match authority.split_once(':') {
        Some((host, port)) => Ok((host, Some(parse_port(port)?))),
        None => Ok((authority, None)),
    }
}

fn parse_port(port: &str) -> Result<u16, DomainError> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 && port.chars().all(|c| c.is_ascii_digit()) => Ok(p),
        _ => Err(DomainError::Port(clip(port).into_owned())),
    }
}

fn check_host(host: &str) -> Result<(), DomainError> {
    if host.starts_with('[') || host.parse::<std::net::Ipv4Addr>().is_ok() {
        return Ok(());
    }
    if host.contains('_') {
        return Err(DomainError::Underscore(clip(host).into_owned()));
    }
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(DomainError::Host(clip(host).into_owned()));
    }
    Ok(())
}

/// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`: one component of a repository path.
pub fn is_path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if bytes.is_empty() || !alnum(bytes[0]) || !alnum(bytes[bytes.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(bytes[i]) {
            i += 1;
        }
        let sep = &component[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.chars().all(|c| c == '-')) {
            return false;
        }
    }
    true
}

/// Docker Hub, the registry of references without a host.
pub const DOCKER_HUB: &str = "docker.io";
const MAX_TAG: usize = 128;
const MAX_NAME: usize = 255;

/// A parsed image reference. `host` is `host[:port]`; `path` the repository path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    pub host: String,
    pub path: String,
    pub tag: Option<String>,
    pub digest: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("is empty")]
    Empty,
    #[error("contains whitespace")]
    Whitespace,
    #[error("has a scheme `{0}://`; an image reference has none")]
    Scheme(String),
    #[error("registry host: {0}")]
    Host(DomainError),
    #[error("repository path component `{0}` must be lowercase letters and digits separated by `.`, `_`, `__` or `-`")]
    Path(String),
    #[error("repository name is longer than 255 characters")]
    NameTooLong,
    #[error("tag `{0}` must be 1 to 128 characters of letters, digits, `_`, `.` and `-`, not starting with `.` or `-`")]
    Tag(String),
    #[error("tag `{0}` is {1} characters long; a tag has at most 128")]
    TagTooLong(String, usize),
    #[error("digest `{0}` must be sha256:<64 hex> or sha512:<128 hex>")]
    Digest(String),
}

impl Reference {
    /// Parse a reference as Docker does: the first component is a registry host when it has a
    /// `.` or a `:` or is `localhost`; otherwise the image is on Docker Hub.
    pub fn parse(text: &str) -> Result<Reference, ReferenceError> {
        if text.is_empty() {
            return Err(ReferenceError::Empty);
        }
        if text.contains(char::is_whitespace) {
            return Err(ReferenceError::Whitespace);
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(ReferenceError::Scheme(clip(scheme).into_owned()));
        }
        let (rest, digest) = match text.split_once('@') {
            Some((rest, digest)) => {
                check_digest(digest)?;
                (rest, Some(digest.to_string()))
            }
            None => (text, None),
        };
        let last_slash = rest.rfind('/').map_or(0, |i| i + 1);
        let (name, tag) = match rest[last_slash..].rfind(':') {
            Some(colon) => {
                let tag = &rest[last_slash + colon + 1..];
                check_tag(tag)?;
                (&rest[..last_slash + colon], Some(tag.to_string()))
            }
            None => (rest, None),
        };
        let (host, path) = match name.split_once('/') {
            Some((first, path)) if first.contains(['.', ':']) || first == "localhost" => {
                let domain = parse_domain(first).map_err(ReferenceError::Host)?;
                (domain.authority(), path.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        for component in path.split('/') {
            if !is_path_component(component) {
                return Err(ReferenceError::Path(clip(component).into_owned()));
            }
        }
        if host.len() + 1 + path.len() > MAX_NAME {
            return Err(ReferenceError::NameTooLong);
        }
        let path = if host == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        Ok(Reference {
            host,
            path,
            tag,
            digest,
        })
    }

    /// The canonical form: host always present, `latest` when neither tag nor digest is given.
    pub fn canonical(&self) -> Reference {
        let mut canonical = self.clone();
        if canonical.tag.is_none() && canonical.digest.is_none() {
            canonical.tag = Some("latest".into());
        }
        canonical
    }

    /// `host/path`, the repository.
    pub fn repository(&self) -> String {
        format!("{}/{}", self.host, self.path)
    }

    /// What to ask the registry for: the digest when there is one, else the tag.
    pub fn manifest_reference(&self) -> &str {
        self.digest
            .as_deref()
            .or(self.tag.as_deref())
            .unwrap_or("latest")
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.host, self.path)?;
        if let Some(tag) = &self.tag {
            write!(f, ":{tag}")?;
        }
        if let Some(digest) = &self.digest {
            write!(f, "@{digest}")?;
        }
        Ok(())
    }
}

/// Docker's tag grammar, `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_tag(tag: &str) -> Result<(), ReferenceError> {
    let ok = tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        Err(ReferenceError::Tag(clip(tag).into_owned()))
    } else if tag.len() > MAX_TAG {
        Err(ReferenceError::TagTooLong(
            clip(tag).into_owned(),
            tag.len(),
        ))
    } else {
        Ok(())
    }
}

fn check_digest(digest: &str) -> Result<(), ReferenceError> {
    crate::oci::Digest::parse(digest)
        .map(drop)
        .map_err(|_| ReferenceError::Digest(clip(digest).into_owned()))
}

/// Registries that authenticate only with short-lived tokens, by host (`*` stands for any
/// characters), and why.
const TOKEN_ONLY_HOSTS: &[(&str, &str)] = &[
    (
        "*.dkr.ecr.*.amazonaws.com",
        "AWS ECR issues short-lived tokens (12 hours) through the AWS API",
    ),
    (
        "*.dkr.ecr.*.amazonaws.com.cn",
        "AWS ECR issues short-lived tokens (12 hours) through the AWS API",
    ),
    (
        "*.dkr.ecr-fips.*.amazonaws.com",
        "AWS ECR (a FIPS endpoint) issues short-lived tokens (12 hours) through the AWS API",
    ),
    (
        "*-docker.pkg.dev",
        "Google Artifact Registry authenticates with OAuth tokens or service-account keys",
    ),
];

/// Why the edge agent cannot authenticate to a registry, when it cannot: the agent only does
/// basic username/password authentication.
pub fn token_auth_reason(domain: &Domain, username: Option<&str>) -> Option<String> {
    static TOKEN_ONLY: std::sync::LazyLock<globset::GlobSet> = std::sync::LazyLock::new(|| {
        let mut set = globset::GlobSetBuilder::new();
        for (pattern, _) in TOKEN_ONLY_HOSTS {
            set.add(globset::Glob::new(pattern).expect("a valid host pattern"));
        }
        set.build().expect("valid host patterns")
    });
    let host = domain.host.to_ascii_lowercase();
    if let Some(&i) = TOKEN_ONLY.matches(&host).first() {
        return Some(TOKEN_ONLY_HOSTS[i].1.to_string());
    }
    let token_user = matches!(
        username,
        Some("_json_key" | "_json_key_base64" | "oauth2accesstoken" | "_token" | "_dcgcloud_token")
    );
    if (host == "gcr.io" || host.ends_with(".gcr.io")) && token_user {
        return Some(format!(
            "`{}` is a Google token login, not a basic-auth user",
            username.unwrap_or_default()
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_registry_locations() {
        let d = parse_domain("10.10.254.254:8000/spectro-images/").unwrap();
        assert_eq!(
            (d.host.as_str(), d.port, d.path.as_deref()),
            ("10.10.254.254", Some(8000), Some("spectro-images"))
        );
        assert_eq!(d.to_string(), "10.10.254.254:8000/spectro-images");
        assert_eq!(
            parse_domain("[::1]:5000").unwrap().authority(),
            "[::1]:5000"
        );
        assert_eq!(parse_domain("ttl.sh").unwrap().path, None);
    }

    #[test]
    fn rejects_what_the_agent_cannot_use() {
        let cases = [
            ("https://ttl.sh", DomainError::Scheme("https".into())),
            (
                "my_registry.local",
                DomainError::Underscore("my_registry.local".into()),
            ),
            ("reg.io:99999", DomainError::Port("99999".into())),
            ("reg.io/Images", DomainError::Path("Images".into())),
            ("-bad.io", DomainError::Host("-bad.io".into())),
            ("reg.io/app:1.0", DomainError::TagOrDigest),
            ("", DomainError::Empty),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_domain(input), Err(expected), "{input}");
        }
    }

    #[test]
    fn knows_token_auth_registries() {
        for ecr in [
            "123456789012.dkr.ecr.us-east-1.amazonaws.com",
            "123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn",
            "123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com",
        ] {
            let ecr = parse_domain(ecr).unwrap();
            assert!(token_auth_reason(&ecr, Some("AWS")).is_some(), "{ecr}");
        }
        let lookalike = parse_domain("dkr.ecr.example.com").unwrap();
        assert!(token_auth_reason(&lookalike, Some("AWS")).is_none());
        let ar = parse_domain("us-east1-docker.pkg.dev/project/repo").unwrap();
        assert!(token_auth_reason(&ar, Some("user")).is_some());
        let gcr = parse_domain("gcr.io/project").unwrap();
        assert!(token_auth_reason(&gcr, Some("_json_key")).is_some());
        assert!(token_auth_reason(&gcr, Some("robot")).is_none());
        assert!(token_auth_reason(
            &parse_domain("harbor.example.com").unwrap(),
            Some("_json_key")
        )
        .is_none());
    }

    #[test]
    fn canonicalizes_references() {
        let sha = format!("sha256:{}", "a".repeat(64));
        let cases = [
            ("nginx:1.25", "docker.io/library/nginx:1.25"),
            ("nginx", "docker.io/library/nginx:latest"),
            ("bitnami/redis", "docker.io/bitnami/redis:latest"),
            (
                "quay.io/kairos/core-ubuntu-20-lts-rke2:v1.25.2-rke2r1",
                "quay.io/kairos/core-ubuntu-20-lts-rke2:v1.25.2-rke2r1",
            ),
            ("localhost/app", "localhost/app:latest"),
            ("localhost:5000/a/b:1", "localhost:5000/a/b:1"),
            (
                "10.10.254.254:8000/spectro-images/app:v1",
                "10.10.254.254:8000/spectro-images/app:v1",
            ),
            ("[::1]:5000/app:1", "[::1]:5000/app:1"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Reference::parse(input).unwrap().canonical().to_string(),
                expected,
                "{input}"
            );
        }
        let with_digest = Reference::parse(&format!("alpine@{sha}"))
            .unwrap()
            .canonical();
        assert_eq!(
            with_digest.to_string(),
            format!("docker.io/library/alpine@{sha}")
        );
        let both = Reference::parse(&format!("gcr.io/p/app:1.0@{sha}")).unwrap();
        assert_eq!(
            (both.tag.as_deref(), both.manifest_reference()),
            (Some("1.0"), sha.as_str())
        );
    }

    #[test]
    fn rejects_invalid_references_precisely() {
        let cases = [
            ("", ReferenceError::Empty),
            ("Nginx", ReferenceError::Path("Nginx".into())),
            ("quay.io/Kairos/core", ReferenceError::Path("Kairos".into())),
            ("nginx:", ReferenceError::Tag("".into())),
            ("nginx:-bad", ReferenceError::Tag("-bad".into())),
            (
                "nginx@sha256:abc",
                ReferenceError::Digest("sha256:abc".into()),
            ),
            (
                "https://quay.io/app",
                ReferenceError::Scheme("https".into()),
            ),
            (
                "my_reg.io/app",
                ReferenceError::Host(DomainError::Underscore("my_reg.io".into())),
            ),
            ("a//b", ReferenceError::Path("".into())),
        ];
        for (input, expected) in cases {
            assert_eq!(Reference::parse(input), Err(expected), "{input:?}");
        }
        assert!(matches!(
            Reference::parse(&format!("app:{}", "t".repeat(129))),
            Err(ReferenceError::TagTooLong(_, 129))
        ));
        assert!(Reference::parse(&format!("app:{}", "t".repeat(128))).is_ok());
        assert_eq!(
            Reference::parse(&format!("r.io/{}", "a".repeat(260))),
            Err(ReferenceError::NameTooLong)
        );
    }
}
