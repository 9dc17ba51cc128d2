//! Where the edge agent pulls an image from, given the user-data: a single external registry
//! prefixes every canonical reference with its domain; mapping rules replace the longest
//! matching prefix (at a `/` boundary) and keep the rest; otherwise the image is unchanged.

use crate::reference::{parse_domain, Domain, Reference, ReferenceError};
use crate::secret::Credentials;
use crate::userdata::model::Registry;
use crate::yaml::Node;

/// A registry the user-data declares, with what the edge host uses to reach it.
#[derive(Debug, Clone)]
pub struct Declared {
    /// The `domain` as written.
    pub text: String,
    pub domain: Domain,
    /// The username and password, decoded ([`Registry::credentials`]).
    pub credentials: Option<Credentials>,
    pub insecure: bool,
    pub certificates: Vec<String>,
}

impl Declared {
    fn from_model(registry: Registry) -> Option<Declared> {
        let domain = parse_domain(&registry.domain).ok()?;
        Some(Declared {
            credentials: registry.credentials(),
            text: registry.domain,
            domain,
            insecure: registry.insecure.unwrap_or(false),
            certificates: registry.certificates.unwrap_or_default(),
        })
    }
}

/// How references are rewritten.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rules {
    /// No external registry: images are pulled from where they are.
    Unchanged,
    /// `stylus.registryCredentials`: every image is prefixed with this domain.
    Prefix(String),
    /// `stylus.externalRegistries.registryMappingRules`: source prefix → target, as written.
    Mapping(Vec<(String, String)>),
}

/// The rewrite of one image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rewrite {
    pub from: Reference,
    pub to: Reference,
    /// The declared registry (its `domain` as written) whose credentials apply to `to`.
    pub registry: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RewriteError {
    #[error("rewriting `{from}` for the external registry gives `{to}`, which is not a valid reference ({source}); the edge agent cannot pull it")]
    Invalid {
        from: String,
        to: String,
        source: ReferenceError,
    },
}

/// The user-data's rewrite rules and declared registries.
#[derive(Debug, Clone)]
pub struct Rewriter {
    pub rules: Rules,
    pub registries: Vec<Declared>,
}

impl Rewriter {
    /// No user-data: images are pulled from where they are, no registry declared.
    pub fn none() -> Rewriter {
        Rewriter {
            rules: Rules::Unchanged,
            registries: Vec::new(),
        }
    }

    /// Read the rules from a validated user-data document. With both `registryCredentials`
    /// and `externalRegistries` (an error in validation) the mapping rules are used.
    pub fn from_user_data(root: &Node) -> Rewriter {
        let stylus = root.get("stylus");
        let model = |node: &Node| serde_json::from_value::<Registry>(node.to_json()).ok();
        let single = stylus
            .and_then(|s| s.get("registryCredentials"))
            .and_then(model);
        let list: Vec<Registry> = stylus
            .and_then(|s| s.at(&["externalRegistries", "registries"]))
            .map(|n| n.items().iter().filter_map(model).collect())
            .unwrap_or_default();
        let mapping: Vec<(String, String)> = stylus
            .and_then(|s| s.at(&["externalRegistries", "registryMappingRules"]))
            .map(|n| {
                n.entries()
                    .iter()
                    .filter_map(|e| Some((e.key.clone(), e.value.as_str()?.to_string())))
                    .collect()
            })
            .unwrap_or_default();
        let rules = match (&single, mapping.is_empty()) {
            (_, false) => Rules::Mapping(mapping),
            (Some(registry), true) => {
                Rules::Prefix(registry.domain.trim_end_matches('/').to_string())
            }
            (None, true) => Rules::Unchanged,
        };
        let registries = single
            .into_iter()
            .chain(list)
            .filter_map(Declared::from_model)
            .collect();
        Rewriter { rules, registries }
    }

    /// Where the agent pulls `reference` from.
    pub fn rewrite(&self, reference: &Reference) -> Result<Rewrite, RewriteError> {
        let from = reference.canonical();
        let target = match &self.rules {
            Rules::Unchanged => None,
            Rules::Prefix(domain) => Some(format!("{domain}/{from}")),
            Rules::Mapping(rules) => {
                let repository = from.repository();
                rules
                    .iter()
                    .map(|(key, value)| (key.trim_end_matches('/'), value.trim_end_matches('/')))
                    .filter(|(key, _)| {
                        repository == *key
                            || repository
                                .strip_prefix(key)
                                .is_some_and(|rest| rest.starts_with('/'))
                    })
                    .max_by_key(|(key, _)| key.len())
                    .map(|(key, value)| {
                        let suffix = from.to_string()[key.len()..].to_string();
                        format!("{value}{suffix}")
                    })
            }
        };
        let to = match target {
            None => from.clone(),
            Some(text) => Reference::parse(&text).map_err(|source| RewriteError::Invalid {
                from: crate::limits::clip(&from.to_string()).into_owned(),
                to: crate::limits::clip(&text).into_owned(),
                source,
            })?,
        };
        let registry = self.registry_for(&to).map(|d| d.text.clone());
        Ok(Rewrite { from, to, registry })
    }

    /// The declared registry serving `reference`: same `host[:port]`, the longest domain path
    /// that prefixes the repository preferred.
    pub fn registry_for(&self, reference: &Reference) -> Option<&Declared> {
        let repository = reference.repository();
        self.registries
            .iter()
            .filter(|d| d.domain.authority() == reference.host)
            .max_by_key(|d| {
                let domain = d.domain.to_string();
                let prefixes =
                    repository == domain || repository.starts_with(&format!("{domain}/"));
                (prefixes, domain.len())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::yaml;

    fn rewriter(user_data: &str) -> Rewriter {
        Rewriter::from_user_data(&yaml::parse(user_data).unwrap().root)
    }

    fn rewrite(r: &Rewriter, image: &str) -> String {
        r.rewrite(&Reference::parse(image).unwrap())
            .unwrap()
            .to
            .to_string()
    }

    #[test]
    fn a_single_registry_prefixes_the_canonical_reference() {
        let r = rewriter("stylus:\n  registryCredentials:\n    domain: 10.10.254.254:8000/spectro-images/\n    username: u\n    password: p\n");
        let cases = [
            ("quay.io/kairos/core-ubuntu-20-lts-rke2:v1.25.2-rke2r1", "10.10.254.254:8000/spectro-images/quay.io/kairos/core-ubuntu-20-lts-rke2:v1.25.2-rke2r1"),
            ("nginx:1.25", "10.10.254.254:8000/spectro-images/docker.io/library/nginx:1.25"),
            ("nginx", "10.10.254.254:8000/spectro-images/docker.io/library/nginx:latest"),
        ];
        for (from, to) in cases {
            assert_eq!(rewrite(&r, from), to);
        }
        let sha = format!("sha256:{}", "b".repeat(64));
        assert_eq!(
            rewrite(&r, &format!("gcr.io/p/app@{sha}")),
            format!("10.10.254.254:8000/spectro-images/gcr.io/p/app@{sha}")
        );
        let out = r.rewrite(&Reference::parse("nginx").unwrap()).unwrap();
        assert_eq!(
            out.registry.as_deref(),
            Some("10.10.254.254:8000/spectro-images/")
        );
    }

    #[test]
    fn a_source_host_with_a_port_cannot_be_prefixed() {
        let r = rewriter("stylus:\n  registryCredentials:\n    domain: mirror.local\n");
        let err = r
            .rewrite(&Reference::parse("reg.local:5000/app:1").unwrap())
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("mirror.local/reg.local:5000/app:1"),
            "{err}"
        );
    }

    #[test]
    fn mapping_rules_replace_the_longest_prefix_at_a_slash_boundary() {
        let r = rewriter(concat!(
            "stylus:\n  externalRegistries:\n    registries:\n      - domain: targetdomain.com\n    registryMappingRules:\n",
            "      somedomain.com/somepath: targetdomain.com/other/path\n",
            "      somedomain.com/somepath/deeper: targetdomain.com/deep\n",
            "      gcr.io/foo: targetdomain.com/foo\n",
            "      docker.io/library/nginx: targetdomain.com/web/nginx\n",
        ));
        let sha = format!("sha256:{}", "c".repeat(64));
        let cases = [
            (
                "somedomain.com/somepath/example-repo/alpine:latest",
                "targetdomain.com/other/path/example-repo/alpine:latest",
            ),
            (
                "somedomain.com/somepath/deeper/x:1",
                "targetdomain.com/deep/x:1",
            ),
            ("gcr.io/foobar/x:1", "gcr.io/foobar/x:1"),
            ("gcr.io/foo/x:1", "targetdomain.com/foo/x:1"),
            ("nginx:1.25", "targetdomain.com/web/nginx:1.25"),
            ("quay.io/other/app:2", "quay.io/other/app:2"),
        ];
        for (from, to) in cases {
            assert_eq!(rewrite(&r, from), to, "{from}");
        }
        assert_eq!(
            rewrite(&r, &format!("gcr.io/foo/x@{sha}")),
            format!("targetdomain.com/foo/x@{sha}")
        );
        let out = r
            .rewrite(&Reference::parse("gcr.io/foo/x:1").unwrap())
            .unwrap();
        assert_eq!(out.registry.as_deref(), Some("targetdomain.com"));
        let unmapped = r
            .rewrite(&Reference::parse("quay.io/a:1").unwrap())
            .unwrap();
        assert_eq!(unmapped.registry, None);
    }

    #[test]
    fn no_external_registry_leaves_images_alone() {
        let r = rewriter("stylus:\n  site:\n    name: x\n");
        assert_eq!(rewrite(&r, "nginx"), "docker.io/library/nginx:latest");
    }

    #[test]
    fn encoded_passwords_are_decoded_for_use() {
        let r = rewriter("stylus:\n  registryCredentials:\n    domain: r.local\n    username: u\n    password: UzNjcmV0IQ==\n    encodedPassword: true\n");
        let credentials = r.registries[0].credentials.as_ref().unwrap();
        assert_eq!(credentials.password, "S3cret!");
    }
}
