//! The rules of the settings: each value checked by its kind (one line of printable text; an
//! image reference, a repository, a proxy URL, ...), then the rules of single settings and
//! across them, and the references they compose. Findings point at where a value was set.

use std::path::PathBuf;

use super::{Arch, Compression, Distribution, Os};
use super::{Kind, Setting, Settings, Values, ISO_IMAGE, PROVIDER_IMAGE, SETTINGS};
use crate::diagnostic::{did_you_mean, Diagnostic, Rule, Severity};
use crate::limits::clip;
use crate::reference::{parse_domain, Reference, ReferenceError};

/// Content bundle parts: at least 1 MB, at most 4095 MiB (an ISO 9660 file stays below 4 GiB).
const MIN_PART_SIZE: u64 = 1_000_000;
const MAX_PART_SIZE: u64 = 4095 << 20;

/// An image reference composed from settings.
struct Composed {
    /// What it names, for messages.
    what: &'static str,
    /// How it is composed, the settings by name ([`PROVIDER_IMAGE`], [`ISO_IMAGE`]).
    shape: &'static str,
    reference: String,
}

/// The names of the settings in a shape such as [`PROVIDER_IMAGE`], in order.
fn setting_names(shape: &'static str) -> impl Iterator<Item = &'static str> {
    shape
        .split(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .filter(|name| !name.is_empty())
}

/// The image references the settings compose, before anything is built: a provider image for
/// each Kubernetes version and the ISO image of `ISO_NAME`. (The installer image is
/// `forge.local/ISO_NAME:<12 hex digits>`, valid with a valid ISO_NAME; cache references add
/// `<kind>-<20 hex digits>` to a repository checked on its own.)
fn composed(settings: &Settings) -> Vec<Composed> {
    let providers = settings.k8s_versions().into_iter().filter_map(|v| {
        Some(Composed {
            what: "provider image",
            shape: PROVIDER_IMAGE,
            reference: settings.provider_tag(&v)?,
        })
    });
    let iso = Some(&settings.iso_name)
        .filter(|name| !name.is_empty())
        .and_then(|name| {
            Some(Composed {
                what: "ISO image",
                shape: ISO_IMAGE,
                reference: settings.iso_image_tag(name)?,
            })
        });
    providers.chain(iso).collect()
}

/// A value's first control character (a line break, an escape, ...) and its position.
fn control_character(value: &str) -> Option<(usize, char)> {
    value.chars().enumerate().find(|(_, c)| c.is_control())
}

/// Characters kernel arguments may not hold: quotes, and what GRUB or a shell would interpret.
const KERNEL_ARG_METACHARACTERS: &str = "\"'`\\$;{}";

/// Whether `text` is one word of lowercase ASCII letters and digits and the `extra` characters.
fn lowercase_word(text: &str, extra: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || extra.contains(c))
}

/// What an installer ISO name is made of: ISO_NAME, and the file stem of each site's user-data
/// when there are several (`<ISO_NAME>-<stem>.iso`). It also names the installer image and the
/// ISO image (`--push-iso`), so it is one component of a repository path.
pub const ISO_NAME_CHARACTERS: &str = "lowercase letters and digits separated by `-`, `_` or `__`";

/// Whether `name` may name an installer ISO ([`ISO_NAME_CHARACTERS`]).
pub fn is_iso_name(name: &str) -> bool {
    lowercase_word(name, "-_") && crate::reference::is_path_component(name)
}

/// What is wrong with a value of `kind`, in words that follow "NAME `value` ".
fn kind_problem(kind: Kind, value: &str) -> Option<String> {
    match kind {
        Kind::Image => Reference::parse(&value.replace("{version}", "0.0.0"))
            .err()
            .map(|e| format!("is not an image reference: {e}")),
        Kind::Repository => (value.contains([':', '@'])
            || Reference::parse(&format!("forge.invalid/{value}")).is_err())
        .then(|| "is not a repository path: lowercase letters and digits separated by `.`, `_`, `-` and `/`".to_string()),
        Kind::ProxyUrl => proxy_problem(value),
        Kind::HostList => value
            .split(',')
            .map(str::trim)
            .find(|host| {
                !host.chars().all(|c| c.is_ascii_alphanumeric() || ".-_*:/[]".contains(c))
            })
            .map(|host| format!("has `{}`, which is not a host, domain, address or CIDR", clip(host))),
        Kind::KernelArgs => value
            .chars()
            .find(|c| KERNEL_ARG_METACHARACTERS.contains(*c))
            .map(|c| format!("has `{c}`: kernel arguments are words without quotes, `\\`, `$`, `;`, braces or backquotes")),
        Kind::Registry => parse_domain(value)
            .err()
            .map(|e| format!("{e}; write host[:port][/path] without a scheme or tag")),
        Kind::Tag => crate::reference::check_tag(value)
            .err()
            .map(|e| format!("is not an image tag: {e}")),
        Kind::Text | Kind::Bool | Kind::Unimplemented | Kind::File | Kind::OptionalFile | Kind::Versions => None,
    }
}

/// What is wrong with a proxy URL: scheme, host, port, and nothing after the authority.
fn proxy_problem(value: &str) -> Option<String> {
    let url = match reqwest::Url::parse(value) {
        Ok(url) => url,
        Err(e) => return Some(format!("is not a URL ({e})")),
    };
    if !["http", "https"].contains(&url.scheme()) {
        return Some("must be an http:// or https:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Some("has no host".into());
    }
    if url.port() == Some(0) {
        return Some("has port 0; a port is 1 to 65535".into());
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Some(
            "has a path, query or fragment; a proxy is scheme://[user:password@]host:port".into(),
        );
    }
    None
}

/// The findings of the resolved settings.
pub(super) fn check(r: &Values, settings: &Settings) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut unusable = Vec::new();
    for (d, setting) in r.iter() {
        let Some(setting) = setting else { continue };
        let shown = clip(&crate::secret::mask_url(&setting.value))
            .escape_debug()
            .to_string();
        if let Some((at, c)) = control_character(&setting.value) {
            let what = match c {
                '\n' | '\r' => "a line break".to_string(),
                c => format!("the control character U+{:04X}", c as u32),
            };
            out.push(
                r.diag(
                    Rule::ControlCharacter,
                    d.name,
                    format!("{} `{shown}` holds {what} at character {}", d.name, at + 1),
                )
                .help("a setting is one line of printable text: remove the character (in a .arg file, a quote does not continue a value on the next line)"),
            );
            unusable.push(d.name);
        } else if let Some(problem) = Some(&setting.value)
            .filter(|v| !v.is_empty())
            .and_then(|v| kind_problem(d.kind, v))
        {
            let mut diag = r.diag(
                Rule::BadSettingValue,
                d.name,
                format!("{} `{shown}` {problem}", d.name),
            );
            if d.kind == Kind::Image {
                diag = diag.help("write [registry[:port]/]repository[:tag][@digest], e.g. registry.example.com/edge/kairos-ubuntu:22.04");
            }
            out.push(diag);
            unusable.push(d.name);
        }
    }
    let r = &Usable {
        r,
        settings,
        unusable,
    };
    if let Some(v) = r.get("IMAGE_REGISTRY") {
        if let Err(e) = parse_domain(v) {
            out.push(
                r.diag(
                    Rule::BadImageRegistry,
                    "IMAGE_REGISTRY",
                    format!("IMAGE_REGISTRY `{}` {e}", clip(v)),
                )
                .help("write host[:port][/namespace], e.g. ttl.sh or harbor.example.com:8443/edge"),
            );
        }
    }
    let tag_character = |c: char| c.is_ascii_alphanumeric() || "_.-".contains(c);
    if let Some(v) = r
        .get("CUSTOM_TAG")
        .filter(|v| !v.chars().all(tag_character))
    {
        out.push(
            r.diag(
                Rule::BadCustomTag,
                "CUSTOM_TAG",
                format!(
                    "CUSTOM_TAG `{}` holds characters an image tag cannot: it ends the provider images' tags (PE_VERSION-CUSTOM_TAG), which are letters, digits, `_`, `.` and `-`",
                    clip(v)
                ),
            )
            .help(format!(
                "try `{}`",
                clip(&v.replace(|c: char| !tag_character(c), "-"))
            )),
        );
    }
    // Unlike other settings, ISO_NAME set empty is not unset: it names the ISO.
    let iso_name = r.setting("ISO_NAME").map(|s| s.value.as_str());
    if let Some(v) = iso_name.filter(|v| !is_iso_name(v)) {
        out.push(
            r.diag(
                Rule::BadIsoName,
                "ISO_NAME",
                format!("ISO_NAME `{}` must be {ISO_NAME_CHARACTERS}", clip(v)),
            )
            .help("leave out the .iso extension; forge adds it"),
        );
    }
    if let Some(v) = r.get("ARCH").filter(|v| Arch::parse(v).is_none()) {
        let hint = match v {
            "x86_64" | "x86-64" => " (x86_64 is amd64)",
            "aarch64" => " (aarch64 is arm64)",
            _ => "",
        };
        out.push(r.diag(
            Rule::BadArch,
            "ARCH",
            format!("ARCH `{}` must be amd64 or arm64{hint}", clip(v)),
        ));
    }
    check_choice(
        r,
        "OS_DISTRIBUTION",
        Os::NAMES,
        Rule::BadSettingValue,
        &mut out,
    );
    check_choice(
        r,
        "K8S_DISTRIBUTION",
        Distribution::NAMES,
        Rule::UnknownK8sDistribution,
        &mut out,
    );
    check_choice(
        r,
        "SQUASHFS_COMPRESSION",
        Compression::NAMES,
        Rule::BadSettingValue,
        &mut out,
    );
    if let Some(v) = r.get("CONTENT_PART_SIZE").filter(|v| {
        crate::units::parse_size(v).is_none_or(|n| !(MIN_PART_SIZE..=MAX_PART_SIZE).contains(&n))
    }) {
        out.push(
            r.diag(
                Rule::BadSettingValue,
                "CONTENT_PART_SIZE",
                format!("CONTENT_PART_SIZE `{}` must be a size from 1MB to 4095MiB", clip(v)),
            )
            .help("bytes, or a number with K, M, G, KiB, MiB, GiB (powers of 1024) or KB, MB, GB (powers of 1000), as `split --bytes` reads it, e.g. 3GB"),
        );
    }
    for d in SETTINGS.iter().filter(|d| d.kind == Kind::Unimplemented) {
        if r.flag(d.name) {
            out.push(
                r.diag(
                    Rule::UnimplementedSetting,
                    d.name,
                    format!(
                        "{}=true asks for a CanvOS feature forge does not build yet",
                        d.name
                    ),
                )
                .help(format!(
                    "set {}=false (or remove it), or build this variant with CanvOS",
                    d.name
                )),
            );
        }
    }
    for d in SETTINGS
        .iter()
        .filter(|d| matches!(d.kind, Kind::Bool | Kind::Unimplemented))
    {
        if let Some(v) = r
            .get(d.name)
            .filter(|v| !v.eq_ignore_ascii_case("true") && !v.eq_ignore_ascii_case("false"))
        {
            out.push(r.diag(
                Rule::BadSettingValue,
                d.name,
                format!("{} `{}` must be true or false", d.name, clip(v)),
            ));
        }
    }
    if r.flag("FIPS_ENABLED") && r.flag("UPDATE_KERNEL") {
        out.push(r.diag(Rule::FipsWithUpdateKernel, "UPDATE_KERNEL", "FIPS_ENABLED and UPDATE_KERNEL are both true; a kernel upgrade would replace the FIPS-certified kernel".into()).help("set UPDATE_KERNEL=false for FIPS builds"));
    }
    let versions = r.k8s_versions();
    if r.get("K8S_VERSION").is_some() {
        let distribution = r.get("K8S_DISTRIBUTION").unwrap_or_default();
        for version in &versions {
            if !super::matrix::is_version(version) {
                out.push(r.diag(
                    Rule::BadSettingValue,
                    "K8S_VERSION",
                    format!("K8S_VERSION `{}` is not a version x.y.z", clip(version)),
                ));
            } else if !distribution.is_empty()
                && !r.settings.matrix.versions(distribution).contains(version)
            {
                let known = r.settings.matrix.versions(distribution);
                out.push(
                    r.diag(
                        Rule::K8sVersionNotInMatrix,
                        "K8S_VERSION",
                        format!(
                            "K8S_VERSION `{}` is not in the version matrix for {}",
                            clip(version),
                            clip(distribution)
                        ),
                    )
                    .help(if known.is_empty() {
                        format!("the matrix lists no versions for {}", clip(distribution))
                    } else {
                        format!("known versions: {}", known.join(", "))
                    }),
                );
            }
        }
    }
    for d in SETTINGS
        .iter()
        .filter(|d| matches!(d.kind, Kind::File | Kind::OptionalFile))
    {
        let Some(path) = r.path(d.name) else {
            continue;
        };
        let problem = match std::fs::metadata(&path) {
            Err(_) if d.kind == Kind::OptionalFile => {
                let explicit = r.setting(d.name).is_some_and(|s| s.origin.is_user());
                if explicit {
                    out.push(r.diag(
                        Rule::OptionalFileAbsent,
                        d.name,
                        format!(
                            "{} names `{}`, which does not exist: skipped, as CanvOS does",
                            d.name,
                            clip(&path.to_string_lossy())
                        ),
                    ));
                }
                continue;
            }
            Err(_) => "which does not exist".to_string(),
            Ok(m) => match crate::limits::NotRegular::of(m.file_type()) {
                Some(what) => format!("but {what}"),
                None => continue,
            },
        };
        out.push(r.diag(Rule::MissingFile, d.name, format!("{} names `{}`, {problem}", d.name, clip(&path.to_string_lossy()))).help("fix the path (relative paths start at the file that sets it), or leave the setting empty"));
    }
    check_composed(r, &mut out);
    out
}

/// The references the settings compose (a provider image per version, the ISO image) must be
/// valid as a whole, a tag at most 128 characters: each is checked once the settings it is made
/// of passed their own checks, and the finding points at the last of those making the faulty
/// part (the tag, or the whole) that is set.
fn check_composed(r: &Usable, out: &mut Vec<Diagnostic>) {
    for composed in composed(r.settings) {
        let reported = |name: &str| {
            out.iter()
                .any(|d| d.path == name && d.severity == Severity::Error)
        };
        if setting_names(composed.shape).any(|name| reported(name) || r.unusable.contains(&name)) {
            continue;
        }
        let Err(e) = Reference::parse(&composed.reference) else {
            continue;
        };
        let (name, tag) = composed.shape.split_once(':').expect("a shape has a tag");
        let (part, named) = match e {
            ReferenceError::Tag(_) | ReferenceError::TagTooLong(..) => {
                (tag, format!("{} tag ({tag})", composed.what))
            }
            _ => (
                name,
                format!(
                    "{} `{}` ({})",
                    composed.what,
                    clip(&composed.reference),
                    composed.shape
                ),
            ),
        };
        let settings: Vec<&str> = setting_names(part).collect();
        // The last setting of the part given by the user, else the last with a value.
        let given = |name: &&str| r.setting(name).is_some_and(|s| s.origin.is_user());
        let blamed = settings
            .iter()
            .rfind(|name| r.get(name).is_some() && given(name))
            .or_else(|| settings.iter().rfind(|name| r.get(name).is_some()))
            .unwrap_or(&"IMAGE_REGISTRY");
        out.push(
            r.diag(
                Rule::BadComposedReference,
                blamed,
                format!("the {named} is not valid: {e}"),
            )
            .help(format!(
                "shorten or change the settings it is made of: {}",
                settings.join(", ")
            )),
        );
    }
}

/// The settings that passed the checks of their kind: the rules of single settings look only at
/// these, so that one bad value gets one message.
struct Usable<'a> {
    r: &'a Values,
    settings: &'a Settings,
    unusable: Vec<&'static str>,
}

impl Usable<'_> {
    fn get(&self, name: &str) -> Option<&str> {
        self.r.get(name).filter(|_| !self.unusable.contains(&name))
    }

    fn setting(&self, name: &str) -> Option<&Setting> {
        self.r
            .setting(name)
            .filter(|_| !self.unusable.contains(&name))
    }

    fn flag(&self, name: &str) -> bool {
        self.get(name)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }

    fn path(&self, name: &str) -> Option<PathBuf> {
        self.setting(name).and_then(|_| self.r.path(name))
    }

    fn k8s_versions(&self) -> Vec<String> {
        if self.unusable.contains(&"K8S_VERSION") {
            return Vec::new();
        }
        self.settings.k8s_versions()
    }

    fn diag(&self, rule: Rule, name: &str, message: String) -> Diagnostic {
        self.r.diag(rule, name, message)
    }
}

fn check_choice(r: &Usable, name: &str, allowed: &[&str], rule: Rule, out: &mut Vec<Diagnostic>) {
    let Some(v) = r.get(name).filter(|v| !allowed.contains(v)) else {
        return;
    };
    let mut d = r.diag(
        rule,
        name,
        format!("{name} `{}` is not one of {}", clip(v), allowed.join(", ")),
    );
    if let Some(guess) = did_you_mean(v, allowed.iter().copied()) {
        d = d.help(format!("did you mean `{guess}`?"));
    }
    out.push(d);
}
