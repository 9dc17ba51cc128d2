//! The inputs commands share: where the settings come from, and the sites (each user-data
//! with the ISO it becomes) of a build. Validated once, here: the findings are told, an error
//! among them stops the command, and the user-data's validated text is what an ISO carries.

use std::path::{Path, PathBuf};

use super::Error;
use crate::config;
use crate::limits::FileKind;
use crate::progress::{Event, Progress};
use crate::validate::{self, Outcome, Request};

/// Where the build settings come from (precedence: defaults < `config` < `arg` < `FORGE_*`
/// environment < `sets`).
#[derive(Debug, Clone, Default)]
pub struct SettingsRequest {
    /// `forge.yaml`.
    pub config: Option<PathBuf>,
    /// A CanvOS `.arg` file.
    pub arg: Option<PathBuf>,
    /// The process environment.
    pub env: Vec<(String, String)>,
    /// `--set KEY=VALUE`, in order.
    pub sets: Vec<(String, String)>,
    /// `--secret-file KEY=FILE`: the setting's value is the file's first line.
    pub secret_files: Vec<(String, PathBuf)>,
    /// The CanvOS checkout; default: the directory of `arg`, else the current directory.
    pub checkout: Option<PathBuf>,
}

/// `--FLAG PATH` as words.
fn path_words(flag: &str, path: &Path) -> [String; 2] {
    [format!("--{flag}"), path.display().to_string()]
}

impl SettingsRequest {
    /// The checkout, absolute.
    pub fn checkout(&self) -> PathBuf {
        let dir = self.checkout.clone().or_else(|| {
            let dir = self.arg.as_ref()?.parent()?;
            Some(match dir.as_os_str().is_empty() {
                true => PathBuf::from("."),
                false => dir.to_path_buf(),
            })
        });
        let dir = dir.unwrap_or_else(|| PathBuf::from("."));
        std::path::absolute(&dir).unwrap_or(dir)
    }

    /// The flags that give these layers, as command-line words again (for the jobs `forge
    /// plan` writes and the commands `forge doctor` names), but `--secret-file`, whose files
    /// are this machine's ([`SettingsRequest::secret_file_words`]).
    pub fn words(&self) -> Vec<String> {
        let mut words = Vec::new();
        let files = [("config", &self.config), ("arg", &self.arg)];
        for (flag, path) in files.iter().filter_map(|(f, p)| Some((f, p.as_ref()?))) {
            words.extend(path_words(flag, path));
        }
        for (key, value) in &self.sets {
            words.extend(["--set".to_string(), format!("{key}={value}")]);
        }
        if let Some(dir) = &self.checkout {
            words.extend(path_words("checkout", dir));
        }
        words
    }

    /// The `--secret-file` flags as words.
    pub fn secret_file_words(&self) -> Vec<String> {
        let flag = |(key, path): &(String, PathBuf)| {
            [
                "--secret-file".to_string(),
                format!("{key}={}", path.display()),
            ]
        };
        self.secret_files.iter().flat_map(flag).collect()
    }

    /// The `.arg` file: `--arg`, else, without `--config`, the checkout's `.arg`, which
    /// Earthly reads by itself in a CanvOS checkout.
    pub fn arg_file(&self) -> Option<PathBuf> {
        if self.arg.is_some() || self.config.is_some() {
            return self.arg.clone();
        }
        Some(self.in_checkout_file(".arg")).filter(|p| p.exists())
    }

    /// The checkout's file `name`, named as the checkout was given (`.arg` in the current
    /// directory), so that origins read `.arg:4`.
    pub fn in_checkout_file(&self, name: &str) -> PathBuf {
        let dir = self.checkout.clone().or_else(|| {
            let dir = self.arg.as_ref()?.parent()?;
            Some(dir.to_path_buf())
        });
        match dir {
            Some(dir) => dir.join(name),
            None => PathBuf::from(name),
        }
    }

    /// The checkout's files read without being named: the Earthfile, and `.arg` when neither
    /// `--arg` nor `--config` is given.
    pub fn picked_up(&self) -> Vec<PathBuf> {
        let arg = Some(self.arg_file())
            .filter(|_| self.arg.is_none())
            .flatten();
        self.earthfile().into_iter().chain(arg).collect()
    }

    /// The layers, their files read (each within its size limit).
    pub fn read(&self) -> Result<config::Inputs, Error> {
        let read = |kind, path: &Option<PathBuf>| {
            path.as_ref()
                .map(|p| Ok::<_, Error>((p.clone(), validate::read(kind, p)?)))
                .transpose()
        };
        let secret_files = self
            .secret_files
            .iter()
            .map(|(key, path)| {
                let text = validate::read(FileKind::Secret, path)?;
                let value = text.lines().next().unwrap_or_default().to_string();
                Ok((key.clone(), path.clone(), value))
            })
            .collect::<Result<_, Error>>()?;
        Ok(config::Inputs {
            earthfile: read(FileKind::Earthfile, &self.earthfile())?,
            config: read(FileKind::Settings, &self.config)?,
            arg: read(FileKind::Arg, &self.arg_file())?,
            env: self.env.clone(),
            sets: self.sets.clone(),
            secret_files,
            checkout: Some(self.checkout()),
        })
    }

    /// The checkout's `Earthfile`, when there is one: the release's settings layer.
    pub fn earthfile(&self) -> Option<PathBuf> {
        Some(self.in_checkout_file("Earthfile")).filter(|p| p.exists())
    }

    /// The checkout's directory `name` (`certs`, `overlay`, ...), when it is there.
    pub fn in_checkout(&self, names: &[&str]) -> Option<PathBuf> {
        let checkout = self.checkout();
        names.iter().map(|n| checkout.join(n)).find(|p| p.is_dir())
    }
}

/// The inputs of a build (`forge build`, `forge iso`, `forge plan`): the settings, the
/// user-data of each site, the templates and overlays, and where the outputs go.
#[derive(Debug, Clone, Default)]
pub struct BuildInputs {
    pub settings: SettingsRequest,
    /// User-data files, or directories of `*.yaml` files: one ISO per user-data.
    pub user_data: Vec<PathBuf>,
    /// A directory whose templates replace the built-in ones.
    pub templates: Option<PathBuf>,
    /// The overlays directory; default: the checkout's `overlay/` or `overlays/`.
    pub overlays: Option<PathBuf>,
    /// Searched for content bundles; default: the checkout.
    pub content_dir: Option<PathBuf>,
    /// Where the ISOs, their checksums, `manifest.json` and `profile-snippet.yaml` go.
    pub output: PathBuf,
    /// Warnings stop the command as errors do (for CI).
    pub strict: bool,
}

/// One site: its user-data, the text validated (what its ISO carries), its ISO's file name.
#[derive(Debug, Clone)]
pub struct Site {
    pub user_data: PathBuf,
    pub text: String,
    pub iso_name: String,
}

impl Site {
    /// The site as the ISO mastering takes it.
    pub fn for_iso(&self) -> crate::iso::Site<'_> {
        crate::iso::Site {
            user_data: &self.user_data,
            text: &self.text,
            name: self.iso_name.clone(),
        }
    }
}

/// Valid inputs: the first user-data's outcome (its redactor knows every user-data's secrets;
/// the settings are the same for all) and the sites.
pub struct Validated {
    pub outcome: Outcome,
    pub sites: Vec<Site>,
}

impl BuildInputs {
    pub fn content_dir(&self) -> PathBuf {
        self.content_dir
            .clone()
            .unwrap_or_else(|| self.settings.checkout())
    }

    /// These inputs as command-line words again (for the jobs `forge plan` writes), but the
    /// user-data and `--secret-file`, which CI jobs get from CI secrets.
    pub fn words(&self) -> Vec<String> {
        let mut words = self.settings.words();
        let dirs = [
            ("templates", &self.templates),
            ("overlays", &self.overlays),
            ("content-dir", &self.content_dir),
        ];
        for (flag, dir) in dirs.iter().filter_map(|(f, d)| Some((f, d.as_ref()?))) {
            words.extend(path_words(flag, dir));
        }
        words.extend(path_words("output", &self.output));
        words
    }

    pub fn overlays(&self) -> Option<PathBuf> {
        self.overlays
            .clone()
            .or_else(|| self.settings.in_checkout(&["overlay", "overlays"]))
    }

    /// The user-data arguments: `--user-data`, else the checkout's `user-data`, which
    /// CanvOS's `+validate-user-data` takes; none when neither.
    pub fn user_data_args(&self) -> Vec<PathBuf> {
        if !self.user_data.is_empty() {
            return self.user_data.clone();
        }
        let file = self.settings.in_checkout_file("user-data");
        file.exists().then_some(file).into_iter().collect()
    }

    /// Validate the settings, `profile` and every user-data (each user-data's own findings
    /// once, the settings' once) and name their ISOs; without user-data, the settings and
    /// `profile` alone, and no site. Says which files of the checkout it read unnamed. The
    /// findings and the secrets are told; an error among the findings stops with
    /// [`Error::Invalid`].
    pub fn validate(
        &self,
        profile: Option<&Path>,
        progress: &Progress,
    ) -> Result<Validated, Error> {
        let mut picked = self.settings.picked_up();
        if self.user_data.is_empty() {
            picked.extend(self.user_data_args());
        }
        note_picked_up(&picked, progress);
        let files = user_data_files(&self.user_data_args())?;
        let settings = self.settings.read()?;
        let mut first: Option<Outcome> = None;
        let mut errors = 0;
        let mut texts = Vec::new();
        let runs: Vec<Option<&PathBuf>> = match files.is_empty() {
            true => vec![None],
            false => files.iter().map(Some).collect(),
        };
        for file in runs {
            let request = Request {
                user_data: file.cloned(),
                profile: profile.map(Path::to_path_buf),
                content_dir: Some(self.content_dir()),
                settings: settings.clone(),
                ..Request::default()
            };
            let mut outcome = validate::run(&request)?;
            progress.tell(Event::Secrets(&outcome.redactor));
            if let (Some(_), Some(file)) = (&first, file) {
                outcome.report.diagnostics.retain(|d| d.file == *file);
            }
            if !outcome.report.diagnostics.is_empty() {
                progress.tell(Event::Findings(&outcome.report));
            }
            errors += outcome.report.errors();
            if self.strict {
                errors += outcome.report.warnings();
            }
            texts.push(outcome.user_data_text.take().unwrap_or_default());
            if let Some(first) = &mut first {
                first.redactor.merge(&outcome.redactor);
            } else {
                first = Some(outcome);
            }
        }
        if errors > 0 {
            return Err(Error::Invalid);
        }
        let outcome = first.expect("one run at least");
        let names = iso_names(&outcome.settings.iso_name, &files)?;
        let sites = files
            .into_iter()
            .zip(texts)
            .zip(names)
            .map(|((user_data, text), iso_name)| Site {
                user_data,
                text,
                iso_name,
            })
            .collect();
        Ok(Validated { outcome, sites })
    }
}

/// Say which files of the checkout a command read without their being named.
pub fn note_picked_up(files: &[PathBuf], progress: &Progress) {
    if !files.is_empty() {
        let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        progress.note(&format!(
            "read from the checkout, as Earthly reads them: {}",
            names.join(", ")
        ));
    }
}

/// What a command that masters ISOs says when it has no user-data.
pub const NO_USER_DATA: &str = "no user-data for the installer ISO: give --user-data FILE (or a directory, one ISO per *.yaml), or put it in the checkout as `user-data`, as CanvOS does; --no-iso builds the images alone";

/// The user-data files `args` names: files as given, each directory as its `*.yaml` files in
/// name order.
pub fn user_data_files(args: &[PathBuf]) -> Result<Vec<PathBuf>, Error> {
    let mut files = Vec::new();
    for path in args {
        if !path.is_dir() {
            files.push(path.clone());
            continue;
        }
        let mut found: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(Error::read(format!(
                "the user-data directory {}",
                path.display()
            )))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| !p.is_dir() && p.extension().is_some_and(|e| e == "yaml"))
            .collect();
        if found.is_empty() {
            return Err(Error::Usage(format!(
                "the user-data directory {} holds no *.yaml file; put one user-data per site there",
                path.display()
            )));
        }
        found.sort();
        files.append(&mut found);
    }
    Ok(files)
}

/// The ISO file name of each user-data: `<ISO_NAME>.iso` for one, `<ISO_NAME>-<stem>.iso`
/// for several, whose file stems must then differ and be ISO names themselves.
fn iso_names(iso_name: &str, files: &[PathBuf]) -> Result<Vec<String>, Error> {
    if let [_] = files {
        return Ok(vec![format!("{iso_name}.iso")]);
    }
    let mut names: Vec<String> = Vec::new();
    for (i, file) in files.iter().enumerate() {
        let stem = file.file_stem().unwrap_or_default().to_string_lossy();
        if !config::is_iso_name(&stem) {
            return Err(Error::Usage(format!(
                "{}: with several user-data files each ISO is named after its file stem, and `{}` is not an ISO name ({}, as ISO_NAME); rename the file",
                file.display(),
                stem.escape_debug(),
                config::ISO_NAME_CHARACTERS
            )));
        }
        let name = format!("{iso_name}-{stem}.iso");
        if let Some(j) = names.iter().position(|n| *n == name) {
            return Err(Error::Usage(format!(
                "{} and {} would both be {name}: one ISO per user-data is named after its file stem; rename one",
                files[j].display(),
                files[i].display()
            )));
        }
        names.push(name);
    }
    Ok(names)
}
