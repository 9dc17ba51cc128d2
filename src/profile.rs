//! Cluster profiles (optional input): the packs, the OS pack's provider registry credentials,
//! the Kubernetes pack's admission plugins, and the compatibility rules between a profile and
//! the user-data's registries (the table of "Deployment with Custom Image Registries").

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::diagnostic::{Diagnostic, Pos, Rule};
use crate::limits::{clip, MAX_TEMPLATE_DEPTH, MAX_TEMPLATE_EXPANSION_BYTES};
use crate::reference::Reference;
use crate::userdata::credentials::{Credentials, Keys};
use crate::userdata::ExternalRegistry;
use crate::yaml::{self, index, join, Budget, Document, Node, SyntaxError, Value};

const PROVIDER_KEYS: Keys = Keys {
    domain: "registry",
    users: &["user", "username"],
    encoded: None,
};
const ALWAYS_PULL: &str = "AlwaysPullImages";
/// Where the Registry Connect pack's values hold `imageReplacementRules`.
const REPLACEMENT_RULES: [&str; 4] = ["charts", "registry-connect", "config", "registry"];

/// What a profile is checked against: the user-data's external registry and the content
/// bundles the ISO will carry.
pub struct Against<'a> {
    pub user_data: &'a Path,
    pub external: Option<&'a ExternalRegistry>,
    pub content_bundles: &'a [PathBuf],
}

/// One pack of the profile, with its values parsed (they are usually a YAML string).
pub struct Pack {
    pub name: String,
    /// `layer` (or `type`): `os`, `k8s`, `cni`, `csi`, `addon`, ...
    pub layer: String,
    /// `tag` (or `version`): for the Kubernetes pack, the Kubernetes version.
    pub version: Option<String>,
    pub path: String,
    pub values: Option<Document>,
}

/// An image the profile references, templates resolved, and where it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileImage {
    pub image: String,
    pub path: String,
    pub pos: Pos,
}

impl Pack {
    /// The local Harbor (Harbor Edge-Native Config) or primary registry (Registry Connect) pack.
    pub fn is_primary_registry(&self) -> bool {
        let name = self.name.to_ascii_lowercase();
        name.contains("harbor") || name.contains("registry-connect")
    }
}

/// A parsed profile and the findings made while reading it.
pub struct Profile {
    pub packs: Vec<Pack>,
    pub diagnostics: Vec<Diagnostic>,
    /// The file's YAML budget, which every document embedded in it spends, those the checks
    /// read from strings of the packs' values included.
    budget: Cell<Budget>,
}

/// Read the packs of a profile: `packs:` at the top, or Palette's `spec.template.packs`.
pub fn parse(file: &Path, text: &str) -> Profile {
    let mut budget = Budget::default();
    let (document, mut diagnostics) = yaml::parse_file(file, text, &mut budget);
    let Some(document) = document else {
        return Profile {
            packs: Vec::new(),
            diagnostics,
            budget: Cell::new(budget),
        };
    };
    let root = &document.root;
    let (list_path, list) = match [
        ("packs", &["packs"][..]),
        ("spec.template.packs", &["spec", "template", "packs"][..]),
    ]
    .into_iter()
    .find_map(|(path, keys)| root.at(keys).map(|n| (path, n)))
    {
        Some((path, list)) if !list.items().is_empty() => (path, list),
        _ => {
            diagnostics.push(
                Diagnostic::new(Rule::NoPacks, file, "packs", root.pos, "the cluster profile lists no packs")
                    .help("give the profile as YAML with a `packs:` list (or Palette's export with spec.template.packs)"),
            );
            return Profile {
                packs: Vec::new(),
                diagnostics,
                budget: Cell::new(budget),
            };
        }
    };
    let mut packs = Vec::new();
    for (i, node) in list.items().iter().enumerate() {
        let path = index(list_path, i);
        let values = match node.get("values") {
            // Once the file's budget is spent (a finding says where), no more values are read.
            Some(Node {
                value: Value::Str(_),
                ..
            }) if budget.spent() => None,
            Some(
                v @ Node {
                    value: Value::Str(_),
                    ..
                },
            ) => match yaml::parse_embedded(v, &mut budget) {
                Ok(doc) => Some(doc),
                Err(e) => {
                    diagnostics.push(e.diagnostic(file, &join(&path, "values")));
                    None
                }
            },
            Some(v) => Some(Document {
                root: v.clone(),
                duplicates: Vec::new(),
            }),
            None => None,
        };
        let text = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| node.get(k).and_then(Node::as_str))
                .map(str::to_string)
        };
        packs.push(Pack {
            name: text(&["name"]).unwrap_or_default(),
            layer: text(&["layer", "type"]).unwrap_or_default(),
            version: text(&["tag", "version"]),
            path,
            values,
        });
    }
    Profile {
        packs,
        diagnostics,
        budget: Cell::new(budget),
    }
}

impl Profile {
    /// Parse YAML held in a string of the packs' values, within the file's budget; `None`
    /// once the budget is spent (a finding already says where).
    fn embedded(&self, node: &Node) -> Option<Result<Document, SyntaxError>> {
        let mut budget = self.budget.get();
        let parsed = (!budget.spent()).then(|| yaml::parse_embedded(node, &mut budget));
        self.budget.set(budget);
        parsed
    }

    /// `providerCredentials` blocks of the packs' values.
    fn provider_credentials(&self) -> Vec<Credentials<'_>> {
        self.packs
            .iter()
            .filter_map(|pack| {
                let values = pack.values.as_ref()?;
                let entry = values.root.entry("providerCredentials")?;
                Some(Credentials {
                    path: join(&join(&pack.path, "values"), "providerCredentials"),
                    pos: entry.key_pos,
                    node: &entry.value,
                    keys: &PROVIDER_KEYS,
                })
            })
            .collect()
    }

    /// The profile's own rules and its compatibility with the user-data's external registry
    /// and the content bundles. Image findings come from [`Profile::images`].
    pub fn check(&self, file: &Path, text: &str, against: &Against<'_>) -> Vec<Diagnostic> {
        let (external, user_data) = (against.external, against.user_data);
        let mut out = self.diagnostics.clone();
        let providers = self.provider_credentials();
        for creds in &providers {
            out.extend(creds.check(file, text));
        }
        let mut registries: Vec<String> = Vec::new();
        for creds in providers.iter().filter(|c| c.authenticated()) {
            let authority = creds.domain().map(|d| d.authority()).unwrap_or_default();
            if !registries.is_empty() && !registries.contains(&authority) {
                out.push(
                    Diagnostic::new(Rule::SeveralProviderRegistries, file, creds.path.clone(), creds.pos, format!("a second private provider registry `{authority}` (the first is `{}`); a cluster can pull from one private provider registry only", registries[0]))
                        .width("providerCredentials".len()),
                );
            }
            registries.push(authority);
        }
        let primary = self.packs.iter().find(|p| p.is_primary_registry());
        if let Some(provider) = providers.iter().find(|c| c.authenticated()) {
            let width = "providerCredentials".len();
            match external {
                Some(ext) if ext.authenticated => out.push(
                    Diagnostic::new(
                        Rule::ProviderWithExternalRegistry,
                        file,
                        provider.path.clone(),
                        provider.pos,
                        format!("an authenticated provider registry cannot be combined with the authenticated external registry of {} ({}:{}); the agent ignores providerCredentials when the user-data sets registry credentials", user_data.display(), ext.path, ext.pos.line),
                    )
                    .width(width)
                    .help("push the provider images to the external registry and remove providerCredentials, or make the provider registry public"),
                ),
                Some(ext) => out.push(
                    Diagnostic::new(
                        Rule::ProviderCredentialsOverridden,
                        file,
                        provider.path.clone(),
                        provider.pos,
                        format!("the user-data's external registry ({}:{}) replaces the provider registry, so these providerCredentials are ignored", ext.path, ext.pos.line),
                    )
                    .width(width)
                    .help("make sure the provider images are in the external registry"),
                ),
                None => {}
            }
            if let Some(pack) = primary {
                out.push(
                    Diagnostic::new(
                        Rule::ProviderWithPrimaryRegistry,
                        file,
                        provider.path.clone(),
                        provider.pos,
                        format!("an authenticated provider registry cannot be combined with the local Harbor / primary registry pack `{}` ({})", clip(&pack.name), clip(&pack.path)),
                    )
                    .width(width)
                    .help("make the provider registry public, or remove the primary registry pack"),
                );
            }
        }
        if let Some(ext) = external {
            self.replacement_rules_win(file, ext, against, &mut out);
            if primary.is_none() {
                out.extend(ignored_bundles(file, ext, against));
            }
        }
        let reason = match (external, primary) {
            (Some(ext), _) => Some(format!(
                "the user-data sets an external registry ({})",
                ext.path
            )),
            (None, Some(pack)) => Some(format!(
                "the profile has the primary registry pack `{}`",
                clip(&pack.name)
            )),
            (None, None) => None,
        };
        if let Some(reason) = reason {
            for pack in &self.packs {
                if let Some(values) = &pack.values {
                    self.find_always_pull(
                        file,
                        &values.root,
                        &join(&pack.path, "values"),
                        &reason,
                        &mut out,
                    );
                }
            }
        }
        out
    }
}

impl Profile {
    /// Registry Connect's `imageReplacementRules` next to the user-data's
    /// `registryMappingRules`: the pack's rules take precedence.
    fn replacement_rules_win(
        &self,
        file: &Path,
        external: &ExternalRegistry,
        against: &Against<'_>,
        out: &mut Vec<Diagnostic>,
    ) {
        let Some(mapping) = external.mapping_rules else {
            return;
        };
        let rules_path = |pack: &Pack| {
            REPLACEMENT_RULES
                .iter()
                .chain(&["imageReplacementRules"])
                .fold(join(&pack.path, "values"), |path, key| join(&path, key))
        };
        let found = self.packs.iter().find_map(|pack| {
            let registry = pack.values.as_ref()?.root.at(&REPLACEMENT_RULES)?;
            let entry = registry.entry("imageReplacementRules")?;
            let rules = match &entry.value.value {
                Value::Str(text) => match self.embedded(&entry.value) {
                    Some(Ok(doc)) => !doc.root.entries().is_empty(),
                    Some(Err(e)) if e.rule == Rule::YamlLimit => {
                        out.push(e.diagnostic(file, &rules_path(pack)));
                        false
                    }
                    _ => !text.trim().is_empty(),
                },
                _ => !entry.value.entries().is_empty(),
            };
            rules.then_some((pack, entry))
        });
        let Some((pack, entry)) = found else {
            return;
        };
        out.push(
            Diagnostic::new(
                Rule::ImageReplacementRulesWin,
                file,
                rules_path(pack),
                entry.key_pos,
                format!("Registry Connect's imageReplacementRules take precedence over the registryMappingRules of {} (line {}): the agent does not apply those", against.user_data.display(), mapping.line),
            )
            .width("imageReplacementRules".len())
            .help("keep one set of rules: move the mapping rules into imageReplacementRules, or remove imageReplacementRules"),
        );
    }

    /// Every image the profile references: each pack's `pack.content.images` and the OS pack's
    /// `options.system.uri`, with `{{ .spectro... }}` templates resolved, in profile order.
    /// Expansion stops for good at [`MAX_TEMPLATE_EXPANSION_BYTES`], with a finding where.
    pub fn images(&self, file: &Path) -> (Vec<ProfileImage>, Vec<Diagnostic>) {
        let mut images: Vec<ProfileImage> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut diagnostics = Vec::new();
        let mut templates = Templates::new(&self.packs);
        for pack in &self.packs {
            let Some(values) = &pack.values else { continue };
            let values_path = join(&pack.path, "values");
            let mut found: Vec<(String, &Node)> = Vec::new();
            let list_path = join(&join(&join(&values_path, "pack"), "content"), "images");
            for (i, item) in values
                .root
                .at(&["pack", "content", "images"])
                .map(Node::items)
                .unwrap_or_default()
                .iter()
                .enumerate()
            {
                let (path, node) = match item.get("image") {
                    Some(image) => (join(&index(&list_path, i), "image"), image),
                    None => (index(&list_path, i), item),
                };
                found.push((path, node));
            }
            if let Some(entry) = values
                .root
                .get("options")
                .and_then(|o| o.entry("system.uri"))
            {
                found.push((
                    join(&join(&values_path, "options"), "system.uri"),
                    &entry.value,
                ));
            }
            for (path, node) in found {
                let Some(raw) = node.as_str() else { continue };
                let image = match templates.expand(raw, 0) {
                    Ok(image) => image,
                    Err(Unresolved::Undefined(missing)) => {
                        diagnostics.push(
                            Diagnostic::new(Rule::UnresolvedTemplate, file, path, node.pos, format!("cannot resolve `{{{{ {} }}}}` in `{}`", clip(&missing), clip(raw)))
                                .help("define the option in the pack's options, or the Kubernetes version as the k8s pack's tag"),
                        );
                        continue;
                    }
                    Err(Unresolved::BudgetSpent) => {
                        diagnostics.push(
                            Diagnostic::new(Rule::UnresolvedTemplate, file, path, node.pos, format!("expanding the `{{{{ }}}}` templates of this profile copies more than {} MiB of option text by here, the most forge expands in one profile; the images after this one are not checked", MAX_TEMPLATE_EXPANSION_BYTES >> 20))
                                .help("write the values out instead of nesting templates in templates"),
                        );
                        return (images, diagnostics);
                    }
                };
                if let Err(e) = Reference::parse(&image) {
                    diagnostics.push(Diagnostic::new(
                        Rule::BadImageReference,
                        file,
                        path,
                        node.pos,
                        format!("image `{}` {e}", clip(&image)),
                    ));
                    continue;
                }
                if seen.insert(image.clone()) {
                    images.push(ProfileImage {
                        image,
                        path,
                        pos: node.pos,
                    });
                }
            }
        }
        (images, diagnostics)
    }

    /// Find `enable-admission-plugins` lists (as a key, or as a `enable-admission-plugins=...`
    /// argument) that hold AlwaysPullImages, looking into YAML strings such as
    /// `cluster.config`.
    fn find_always_pull(
        &self,
        file: &Path,
        node: &Node,
        path: &str,
        reason: &str,
        out: &mut Vec<Diagnostic>,
    ) {
        match &node.value {
            Value::Map(entries) => {
                for entry in entries {
                    let child = join(path, &entry.key);
                    match entry.value.as_str() {
                        Some(plugins) if entry.key == "enable-admission-plugins" => {
                            if plugins.split(',').any(|p| p.trim() == ALWAYS_PULL) {
                                out.push(always_pull(file, child, &entry.value, plugins, reason));
                            }
                        }
                        Some(s) if s.contains("admission-plugins") => {
                            match self.embedded(&entry.value) {
                                Some(Ok(inner)) => {
                                    self.find_always_pull(file, &inner.root, &child, reason, out)
                                }
                                // A string that is not YAML holds no list to check; one that
                                // spends the file's budget is refused as the file would be.
                                Some(Err(e)) if e.rule == Rule::YamlLimit => {
                                    out.push(e.diagnostic(file, &child))
                                }
                                _ => {}
                            }
                        }
                        _ => self.find_always_pull(file, &entry.value, &child, reason, out),
                    }
                }
            }
            Value::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    let child = index(path, i);
                    match item.as_str().and_then(|s| {
                        s.trim_start_matches('-')
                            .strip_prefix("enable-admission-plugins=")
                    }) {
                        Some(plugins) if plugins.split(',').any(|p| p.trim() == ALWAYS_PULL) => {
                            out.push(always_pull(file, child, item, plugins, reason))
                        }
                        _ => self.find_always_pull(file, item, &child, reason, out),
                    }
                }
            }
            _ => {}
        }
    }
}

/// Why a template cannot be expanded.
enum Unresolved {
    /// The variable the profile does not define (or that nests too deep).
    Undefined(String),
    /// The profile's expansions reached [`MAX_TEMPLATE_EXPANSION_BYTES`].
    BudgetSpent,
}

/// The `{{ }}` variables a profile defines, looked up by name, and what is left of its
/// expansion budget.
struct Templates<'a> {
    variables: HashMap<String, &'a str>,
    left: usize,
}

impl<'a> Templates<'a> {
    /// `{{ .spectro.pack.NAME.options.KEY }}` (the first pack of that name) and
    /// `{{ .spectro.system.kubernetes.version }}` (the k8s pack's tag).
    fn new(packs: &'a [Pack]) -> Templates<'a> {
        let mut variables = HashMap::new();
        if let Some(version) = packs
            .iter()
            .find(|p| p.layer == "k8s")
            .and_then(|p| p.version.as_deref())
        {
            variables.insert(".spectro.system.kubernetes.version".to_string(), version);
        }
        let mut names = HashSet::new();
        for pack in packs.iter().filter(|p| names.insert(p.name.as_str())) {
            let options = pack.values.as_ref().and_then(|v| v.root.get("options"));
            for entry in options.map(Node::entries).unwrap_or_default() {
                if let Some(value) = entry.value.as_str() {
                    let name = format!(".spectro.pack.{}.options.{}", pack.name, entry.key);
                    variables.entry(name).or_insert(value);
                }
            }
        }
        Templates {
            variables,
            left: MAX_TEMPLATE_EXPANSION_BYTES,
        }
    }

    /// `text` with its templates expanded, each spending the length of the option it copies in.
    fn expand(&mut self, text: &str, depth: usize) -> Result<String, Unresolved> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let close = rest[open..]
                .find("}}")
                .map(|c| open + c)
                .ok_or_else(|| Unresolved::Undefined(rest[open..].to_string()))?;
            let variable = rest[open + 2..close].trim();
            let value = self
                .variables
                .get(variable)
                .copied()
                .filter(|_| depth < MAX_TEMPLATE_DEPTH)
                .ok_or_else(|| Unresolved::Undefined(variable.to_string()))?;
            self.left = self
                .left
                .checked_sub(value.len())
                .ok_or(Unresolved::BudgetSpent)?;
            out.push_str(&rest[..open]);
            out.push_str(&self.expand(value, depth + 1)?);
            rest = &rest[close + 2..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// Content bundles the host will not use: an external registry to pull from and no primary
/// registry pack to load the bundles into.
fn ignored_bundles(
    file: &Path,
    ext: &ExternalRegistry,
    against: &Against<'_>,
) -> Option<Diagnostic> {
    if !ext.declared || against.content_bundles.is_empty() {
        return None;
    }
    let names: Vec<String> = against
        .content_bundles
        .iter()
        .filter_map(|b| b.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    Some(
        Diagnostic::new(
            Rule::ContentBundleIgnored,
            against.user_data,
            ext.path,
            ext.pos,
            format!("the content bundles ({}) will not be used: with an external registry and no primary registry pack (Harbor or Registry Connect) in {}, the edge host pulls every image from the external registry, and the deployment fails where one is missing there", names.join(", "), file.display()),
        )
        .width(ext.key.len())
        .help("add the Registry Connect pack (with Harbor or Zot) to the profile, or build without the external registry or without the content bundles"),
    )
}

fn always_pull(file: &Path, path: String, at: &Node, plugins: &str, reason: &str) -> Diagnostic {
    let kept: Vec<&str> = plugins
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty() && *p != ALWAYS_PULL)
        .collect();
    Diagnostic::new(Rule::AlwaysPullImages, file, path, at.pos, format!("{ALWAYS_PULL} is enabled, but {reason}: every pod start would bypass the images the edge host already holds"))
        .width(plugins.chars().count())
        .help(format!("remove it from enable-admission-plugins: `enable-admission-plugins: {}`", clip(&kept.join(","))))
}
