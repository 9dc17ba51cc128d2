//! One validation run over every input (settings, user-data, cluster profile): each input's
//! rules, the rules across inputs, the secrets to mask, and `--fix`. `forge validate` is this;
//! `forge build` starts with it.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::config::{self, Resolved};
use crate::diagnostic::{apply_edits, Edit, Report};
use crate::profile;
use crate::secret::Redactor;
use crate::userdata;

/// Problems that stop a run before any rule is checked (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {what} `{path}`: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Read an input file as text.
pub fn read(what: &'static str, path: &Path) -> Result<String, Error> {
    fs::read(path)
        .and_then(|bytes| {
            String::from_utf8(bytes)
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text"))
        })
        .map_err(|source| Error::Read {
            what,
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
    pub settings: Resolved,
    pub fixed: Option<Fixed>,
}

/// Validate everything the request names.
pub fn run(request: &Request) -> Result<Outcome, Error> {
    let mut report = Report::default();
    let mut redactor = Redactor::new();
    for (path, text) in request.settings.config.iter().chain(&request.settings.arg) {
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
    let settings = config::resolve(&request.settings);
    report.extend(settings.diagnostics.iter().cloned());

    let mut fixed = None;
    let mut external = None;
    let user_data_path = request.user_data.clone().unwrap_or_default();
    if let Some(path) = &request.user_data {
        let mut text = read("user-data file", path)?;
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
        report.add_source(path, &text);
        report.extend(validation.diagnostics);
    }
    if let Some(path) = &request.profile {
        let text = read("cluster profile", path)?;
        redactor.scan(&text);
        report.add_source(path, &text);
        let parsed = profile::parse(path, &text);
        report.extend(parsed.check(path, &text, external.as_ref(), &user_data_path));
    }
    report.sort();
    Ok(Outcome {
        report,
        redactor,
        settings,
        fixed,
    })
}

/// Write `FILE.bak` with the old text, then replace FILE with the new text. Both writes are
/// atomic and keep FILE's permissions (user-data holds credentials and is often 0600).
fn write_fixed(path: &Path, old: &str, new: &str) -> Result<PathBuf, Error> {
    let mut backup = path.as_os_str().to_owned();
    backup.push(".bak");
    let backup = PathBuf::from(backup);
    let permissions = fs::metadata(path)
        .map_err(|source| Error::Write {
            path: path.to_path_buf(),
            source,
        })?
        .permissions();
    write_atomic(&backup, old, &permissions)?;
    write_atomic(path, new, &permissions)?;
    Ok(backup)
}

/// Write a temporary file beside `path`, then rename it over `path`.
fn write_atomic(path: &Path, contents: &str, permissions: &fs::Permissions) -> Result<(), Error> {
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
    staged
        .as_file()
        .set_permissions(permissions.clone())
        .map_err(error)?;
    staged.persist(path).map_err(|e| error(e.error))?;
    Ok(())
}
