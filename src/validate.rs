//! One validation run over every input (settings, user-data, cluster profile): each input's
//! rules, the rules across inputs, the secrets to mask, and `--fix`. `forge validate` is this;
//! `forge build` starts with it.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{self, Settings, Values};
use crate::content;
use crate::diagnostic::{apply_edits, Edit, Report};
use crate::diagnostic::{Diagnostic, Pos, Rule};
use crate::limits::{self, FileKind, ReadError};
use crate::profile::{self, Against, ProfileImage};
use crate::reference::Reference;
use crate::registry::rewrite::{Rewrite, Rewriter};
use crate::secret::Redactor;
use crate::userdata;
use crate::yaml::Document;

/// Problems that stop a run before any rule is checked (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {} `{}`", .kind.what(), .path.display())]
    Read {
        kind: FileKind,
        path: PathBuf,
        #[source]
        source: ReadError,
    },
    #[error("cannot write `{}`", .path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{}` keeping its owner (uid {uid}, gid {gid}); run forge as that user, or as root", .path.display())]
    Owner {
        path: PathBuf,
        uid: u32,
        gid: u32,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Content(#[from] content::ReadError),
}

/// Read an input file as text, within its kind's size limit.
pub fn read(kind: FileKind, path: &Path) -> Result<String, Error> {
    limits::read_text(kind, path).map_err(|source| Error::Read {
        kind,
        path: path.to_path_buf(),
        source,
    })
}

/// What to validate.
#[derive(Debug, Default)]
pub struct Request {
    pub user_data: Option<PathBuf>,
    pub profile: Option<PathBuf>,
    pub settings: config::Inputs,
    /// Images named on the command line, in order.
    pub images: Vec<String>,
    /// A file listing images, one per line (`#` comments).
    pub image_list: Option<PathBuf>,
    /// Where content bundles (`content-*/*.zst`) are looked for.
    pub content_dir: Option<PathBuf>,
    /// Apply mechanical fixes to the user-data file (after writing `FILE.bak`).
    pub fix: bool,
}

/// A fix applied to a file.
#[derive(Debug)]
pub struct Fixed {
    pub file: PathBuf,
    pub backup: PathBuf,
    pub count: usize,
}

/// The outcome of a run.
#[derive(Debug)]
pub struct Outcome {
    pub report: Report,
    pub redactor: Redactor,
    /// The settings, typed, and their values as given (for `forge config show`).
    pub settings: Settings,
    pub values: Values,
    pub fixed: Option<Fixed>,
    /// The user-data document, when one was given and is valid YAML.
    pub user_data: Option<Document>,
    /// The user-data's text as validated (after `--fix`): what an ISO carries.
    pub user_data_text: Option<String>,
    /// The requested images, valid ones only, in order: command line, list file, profile.
    pub images: Vec<Reference>,
    /// The user-data's rewrite rules, when user-data was given and is valid YAML.
    pub rewriter: Option<Rewriter>,
    /// Each requested image and where the edge host pulls it from (with a rewriter).
    pub rewrites: Vec<Rewrite>,
}

/// Validate everything the request names.
pub fn run(request: &Request) -> Result<Outcome, Error> {
    let mut report = Report::default();
    let mut redactor = Redactor::new();
    let settings = &request.settings;
    for (path, text) in settings
        .earthfile
        .iter()
        .chain(&settings.config)
        .chain(&settings.arg)
    {
        redactor.scan(text);
        report.add_source(path, text);
    }
    let env = request
        .settings
        .env
        .iter()
        .filter(|(k, _)| k.starts_with(config::ENV_PREFIX));
    for (_, value) in request.settings.sets.iter().chain(env) {
        redactor.scan(value);
    }
    let config::Resolved {
        settings,
        values,
        diagnostics,
    } = config::resolve(&request.settings);
    report.extend(diagnostics);

    let mut fixed = None;
    let mut external = None;
    let mut user_data = None;
    let mut user_data_text = None;
    let user_data_path = request.user_data.clone().unwrap_or_default();
    if let Some(path) = &request.user_data {
        let mut text = read(FileKind::UserData, path)?;
        redactor.scan(&text);
        let mut validation = userdata::validate(path, &text);
        let edits: Vec<Edit> = validation
            .diagnostics
            .iter()
            .flat_map(|d| d.fix.iter().cloned())
            .collect();
        if request.fix && !edits.is_empty() {
            let count = validation
                .diagnostics
                .iter()
                .filter(|d| !d.fix.is_empty())
                .count();
            let new_text = apply_edits(&text, &edits);
            let backup = write_fixed(path, &text, &new_text)?;
            fixed = Some(Fixed {
                file: path.clone(),
                backup,
                count,
            });
            text = new_text;
            validation = userdata::validate(path, &text);
        }
        validation.secrets.iter().for_each(|s| redactor.add(s));
        external = validation
            .document
            .as_ref()
            .and_then(|d| userdata::external_registry(&d.root));
        user_data = validation.document.take();
        report.add_source(path, &text);
        report.extend(validation.diagnostics);
        user_data_text = Some(text);
    }
    let content_bundles = match &request.content_dir {
        Some(dir) => content::find(dir)?,
        None => Vec::new(),
    };
    let mut profile_images: Vec<ProfileImage> = Vec::new();
    if let Some(path) = &request.profile {
        let text = read(FileKind::Profile, path)?;
        redactor.scan(&text);
        report.add_source(path, &text);
        let parsed = profile::parse(path, &text);
        report.extend(parsed.check(
            path,
            &text,
            &Against {
                user_data: &user_data_path,
                external: external.as_ref(),
                content_bundles: &content_bundles,
            },
        ));
        let (images, findings) = parsed.images(path);
        report.extend(findings);
        profile_images = images;
    }
    let rewriter = user_data
        .as_ref()
        .map(|d| Rewriter::from_user_data(&d.root));
    let (images, rewrites) =
        requested_images(request, &profile_images, rewriter.as_ref(), &mut report)?;
    if let (Some(rewriter), Some(external)) = (&rewriter, &external) {
        report.extend(provider_pulls(
            &settings,
            rewriter,
            &user_data_path,
            external,
        ));
    }
    report.sort();
    Ok(Outcome {
        report,
        redactor,
        settings,
        values,
        fixed,
        user_data,
        user_data_text,
        images,
        rewriter,
        rewrites,
    })
}

/// Where the edge host pulls each provider image from, when the user-data's external registry
/// or mapping rules send it elsewhere than `IMAGE_REGISTRY`, where `forge build --push` puts
/// it: a warning with both references, at the rules.
fn provider_pulls(
    settings: &Settings,
    rewriter: &Rewriter,
    user_data: &Path,
    external: &userdata::ExternalRegistry,
) -> Vec<Diagnostic> {
    let (path, pos) = match external.mapping_rules {
        Some(pos) => ("stylus.externalRegistries.registryMappingRules", pos),
        None => (external.path, external.pos),
    };
    settings
        .k8s_versions()
        .iter()
        .filter_map(|version| {
            let pushed = Reference::parse(&settings.provider_tag(version)?).ok()?;
            let pulled = rewriter.rewrite(&pushed).ok()?.to;
            (pulled != pushed.canonical()).then(|| {
                Diagnostic::new(
                    Rule::ProviderPulledElsewhere,
                    user_data,
                    path,
                    pos,
                    format!(
                        "the edge host pulls the provider image {} from {pulled}, not where --push puts it",
                        pushed.canonical()
                    ),
                )
                .help("forge build --push copies it there too, with this user-data's credentials and CA (--no-push-rewritten skips that); else copy it with forge registry sync")
            })
        })
        .collect()
}

/// The images a request names, parsed, without repeats: command-line arguments, then the list
/// file, then the profile's; and their rewrites when there is a rewriter. Invalid references
/// are IMG001 findings, rewrites the agent could not pull IMG002.
fn requested_images(
    request: &Request,
    profile: &[ProfileImage],
    rewriter: Option<&Rewriter>,
    report: &mut Report,
) -> Result<(Vec<Reference>, Vec<Rewrite>), Error> {
    let mut found: Vec<(String, PathBuf, String, Pos)> = request
        .images
        .iter()
        .map(|i| {
            (
                i.clone(),
                PathBuf::from("<arguments>"),
                String::new(),
                Pos::new(1, 1),
            )
        })
        .collect();
    if let Some(path) = &request.image_list {
        let text = read(FileKind::ImageList, path)?;
        report.add_source(path, &text);
        for (n, line) in text.lines().enumerate() {
            let image = line.split('#').next().unwrap_or_default().trim();
            if !image.is_empty() {
                let column = line.find(image).unwrap_or(0) + 1;
                found.push((
                    image.to_string(),
                    path.clone(),
                    String::new(),
                    Pos::new(n + 1, column),
                ));
            }
        }
    }
    let profile_path = request.profile.clone().unwrap_or_default();
    found.extend(
        profile
            .iter()
            .map(|i| (i.image.clone(), profile_path.clone(), i.path.clone(), i.pos)),
    );
    let mut images: Vec<Reference> = Vec::new();
    let mut rewrites = Vec::new();
    for (text, file, path, pos) in found {
        let width = text.chars().count();
        let reference = match Reference::parse(&text) {
            Ok(reference) if !images.contains(&reference) => reference,
            Ok(_) => continue,
            Err(e) => {
                report.extend([Diagnostic::new(
                    Rule::BadImageReference,
                    &file,
                    path.clone(),
                    pos,
                    format!("image `{}` {e}", limits::clip(&text)),
                )
                .width(width)]);
                continue;
            }
        };
        match rewriter.map(|r| r.rewrite(&reference)) {
            Some(Ok(rewrite)) => rewrites.push(rewrite),
            Some(Err(e)) => report.extend([Diagnostic::new(Rule::UnpullableRewrite, &file, path, pos, e.to_string())
                .width(width)
                .help("the agent prefixes every image with the external registry's domain; reference the image at its original location (the external registry holds the prefixed copy that `forge registry sync` makes)")]),
            None => {}
        }
        images.push(reference);
    }
    Ok((images, rewrites))
}

/// Write `FILE.bak` with the old text, then replace the file FILE names with the new text: a
/// link is followed, so it stays a link and its target is rewritten. Both writes are atomic
/// (a temporary file beside the file, renamed over it) and keep the owner and permissions of
/// the file (user-data holds credentials and is often 0600).
fn write_fixed(path: &Path, old: &str, new: &str) -> Result<PathBuf, Error> {
    let mut backup = path.as_os_str().to_owned();
    backup.push(".bak");
    let backup = PathBuf::from(backup);
    let error = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let target = fs::canonicalize(path).map_err(error)?;
    let like = fs::metadata(&target).map_err(error)?;
    write_atomic(&backup, old, &like)?;
    write_atomic(&target, new, &like)?;
    Ok(backup)
}

/// Write a temporary file beside `path` with the owner and permissions of `like`, then rename
/// it over `path`.
fn write_atomic(path: &Path, contents: &str, like: &fs::Metadata) -> Result<(), Error> {
    use std::os::unix::fs::MetadataExt as _;
    let error = |source| Error::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut staged = tempfile::NamedTempFile::new_in(dir).map_err(error)?;
    staged.write_all(contents.as_bytes()).map_err(error)?;
    let file = staged.as_file();
    let made = file.metadata().map_err(error)?;
    if (made.uid(), made.gid()) != (like.uid(), like.gid()) {
        std::os::unix::fs::fchown(file, Some(like.uid()), Some(like.gid())).map_err(|source| {
            Error::Owner {
                path: path.to_path_buf(),
                uid: like.uid(),
                gid: like.gid(),
                source,
            }
        })?;
    }
    file.set_permissions(like.permissions()).map_err(error)?;
    staged.persist(path).map_err(|e| error(e.error))?;
    Ok(())
}
