//! The build as independent CI jobs (`forge plan`): the base image, one job per provider
//! image, the installer image and the ISOs, each a `forge build --only` run that shares the
//! images it needs with the others through a registry cache (`--cache-from`, `--cache-to`);
//! listed as text, or emitted as JSON, a GitHub Actions workflow or a GitLab CI pipeline.
//!
//! The CI files hold no secret and name no user-data file of the repository: a first job
//! builds forge from its git repository for the others; each job logs in to the registries,
//! writes every site's user-data into a file only it can read and passes the settings that
//! hold secrets, all from CI secrets whose names are derived here ([`Pipeline::secrets`]).

use std::path::PathBuf;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::config::{holds_secret, Origin, Settings, Values, ENV_PREFIX};
use crate::plan::{Kind, Plan};
use crate::reference::{parse_domain, Reference};
use crate::render::Sources;

/// One CI job.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    /// A job name both CI systems accept: `base`, `provider-1-32-3`, `installer`, `iso`.
    pub id: String,
    /// The jobs that must finish first.
    pub needs: Vec<String>,
    /// What it runs, as words.
    pub command: Vec<String>,
    /// The plan's steps it makes (pulled from the cache when there), with their input hashes.
    pub steps: Vec<JobStep>,
    /// The directory it leaves as its artifact (the ISO job's output directory).
    pub artifact: Option<String>,
    /// The words of `command` that are the job's own: `--only STEP`, the cache, `--push`.
    #[serde(skip)]
    pub args: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct JobStep {
    pub step: String,
    pub image: String,
    pub input_hash: String,
}

/// The jobs of `plan`: `build` is the `forge build` command line every job starts from (the
/// settings, user-data and inputs), `cache` the registry cache they share (`registry` or a
/// repository), `output` the ISO job's output directory.
pub fn jobs(plan: &Plan, build: &[String], cache: &str, output: &str) -> Vec<Job> {
    let step = |kind: &dyn Fn(&Kind) -> bool| -> Vec<JobStep> {
        plan.steps
            .iter()
            .filter(|s| kind(&s.kind))
            .map(|s| JobStep {
                step: s.name(),
                image: s.tag.clone(),
                input_hash: s.input_hash.clone(),
            })
            .collect()
    };
    let job = |id: String, only: String, needs: &[&str], extra: &[&str], steps| {
        let mut args = vec!["--only".to_string(), only];
        args.extend(["--cache-from", cache, "--cache-to", cache].map(String::from));
        args.extend(extra.iter().map(|w| w.to_string()));
        Job {
            id,
            needs: needs.iter().map(|n| n.to_string()).collect(),
            command: [build, &args].concat(),
            steps,
            artifact: None,
            args,
        }
    };
    let mut jobs = vec![job(
        "base".into(),
        "base".into(),
        &[],
        &[],
        step(&|k| matches!(k, Kind::Os | Kind::Base)),
    )];
    for s in &plan.steps {
        if let Kind::Provider { version } = &s.kind {
            jobs.push(job(
                format!("provider-{}", version.replace(['.', '+'], "-")),
                format!("provider:{version}"),
                &["base"],
                &["--push"],
                step(&|k| k == &s.kind),
            ));
        }
    }
    jobs.push(job(
        "installer".into(),
        "installer".into(),
        &["base"],
        &[],
        step(&|k| k == &Kind::Installer),
    ));
    let mut iso = job("iso".into(), "iso".into(), &["installer"], &[], Vec::new());
    iso.artifact = Some(output.to_string());
    jobs.push(iso);
    jobs
}

/// The jobs for people: each with what it needs first and the images it makes, then its
/// command line.
pub fn text(jobs: &[Job]) -> String {
    let mut out = String::new();
    for job in jobs {
        let needs = match job.needs.as_slice() {
            [] => String::new(),
            needs => format!(" (after {})", needs.join(", ")),
        };
        out.push_str(&format!("{}{needs}\n", job.id));
        for step in &job.steps {
            out.push_str(&format!("  makes {}\n", step.image));
        }
        out.push_str(&format!("  runs  {}\n", shell_words(&job.command)));
    }
    out
}

/// How the settings resolved from the environment and `--secret-file` reach the CI jobs,
/// which have neither the environment nor the files of the machine that planned them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Carried {
    /// `--set NAME=VALUE` words for the values `FORGE_NAME` gave that hold no secret.
    pub sets: Vec<String>,
    /// The settings whose values are secrets (a proxy URL with a password from the
    /// environment, any `--secret-file`): each job reads it from the CI secret `FORGE_NAME`,
    /// the variable forge reads it from.
    pub secrets: Vec<&'static str>,
}

/// The settings a job must be given besides the command-line flags and files it has.
pub fn carried(values: &Values) -> Carried {
    let mut carried = Carried::default();
    for (def, setting) in values.iter() {
        let Some(setting) = setting else { continue };
        match &setting.origin {
            Origin::Env(_) if !holds_secret(def, &setting.value) => carried.sets.extend([
                "--set".to_string(),
                format!("{}={}", def.name, setting.value),
            ]),
            Origin::Env(_) | Origin::SecretFile(_) => carried.secrets.push(def.name),
            _ => {}
        }
    }
    carried
}

/// The registries the jobs log in to, by host, each once: IMAGE_REGISTRY's (the provider
/// images are pushed there), the registry cache's (`cache`, a repository), and those the
/// engine pulls the source images and the ISO builder's base from.
pub fn registries(settings: &Settings, sources: &Sources, cache: Option<&str>) -> Vec<String> {
    let image = |v: &str| Reference::parse(&v.replace("{version}", "0")).ok();
    let push = settings
        .image_registry
        .as_deref()
        .and_then(|v| parse_domain(v).ok())
        .map(|d| d.authority());
    let cache = cache.and_then(|repo| image(&format!("{repo}:cache")));
    let pulled = sources
        .0
        .iter()
        .filter(|(key, _)| key.ends_with("_image"))
        .map(|(_, v)| v.as_str())
        .chain([settings.iso_tools_image.as_str()])
        .filter_map(image);
    let mut hosts: Vec<String> = Vec::new();
    for host in push
        .into_iter()
        .chain(cache.into_iter().chain(pulled).map(|r| r.host))
    {
        if !hosts.contains(&host) {
            hosts.push(host);
        }
    }
    hosts
}

/// Why the CI files cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum CiError {
    #[error("--forge-git `{0}` is not a git repository URL; give the forge repository the jobs build forge from, e.g. https://HOST/OWNER/forge.git")]
    Repository(String),
    #[error("this forge was built outside a git checkout, so the jobs cannot install the same one: name the commit of --forge-git to install with --forge-rev COMMIT")]
    NoCommit,
    #[error("--forge-rev `{0}` is not a commit; give its hash (7 to 40 hexadecimal digits)")]
    Commit(String),
    #[error(
        "--branch `{0}` is not a branch name; give the repository's default branch, e.g. main"
    )]
    Branch(String),
    #[error("{first} and {second} would both be read from the CI secret {name}; rename one")]
    Clash {
        first: String,
        second: String,
        name: String,
    },
    #[error("`{0}` holds `${{{{`, which GitHub Actions evaluates as an expression before the shell runs the command; remove it from the flag, setting or file name")]
    Expression(String),
}

/// How each CI run gets forge: the `forge` job runs `cargo install` from a git repository
/// at one commit and hands the binary to the other jobs as an artifact.
#[derive(Debug, Clone)]
pub struct Install {
    git: String,
    rev: String,
}

/// The commit this forge was built from (`unknown` outside a git checkout).
const BUILT_FROM: &str = env!("FORGE_COMMIT");

impl Install {
    /// Install from the repository `git` at `rev`, by default the commit this forge was
    /// built from.
    pub fn new(git: &str, rev: Option<&str>) -> Result<Install, CiError> {
        if git.is_empty() || git.contains(|c: char| c.is_whitespace() || c.is_control()) {
            return Err(CiError::Repository(git.to_string()));
        }
        let rev = match rev {
            Some(rev) => rev,
            None if BUILT_FROM == "unknown" => return Err(CiError::NoCommit),
            None => BUILT_FROM,
        };
        if !(7..=40).contains(&rev.len()) || !rev.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(CiError::Commit(rev.to_string()));
        }
        Ok(Install {
            git: git.to_string(),
            rev: rev.to_ascii_lowercase(),
        })
    }

    /// The command that installs forge as `ROOT/bin/forge`, `root` a shell word.
    fn command(&self, root: &str) -> String {
        format!(
            "cargo install --locked --root {root} --git {} --rev {} forge\n",
            shell_word(&self.git),
            self.rev
        )
    }
}

/// What the CI files are made of besides the jobs.
pub struct Request<'a> {
    pub jobs: &'a [Job],
    /// The words after `forge build` every job starts from, without the user-data (which each
    /// job writes from CI secrets) and without `--secret-file`.
    pub build: Vec<String>,
    /// The user-data files, one per site, as `forge plan` was given them.
    pub user_data: &'a [PathBuf],
    /// See [`registries`].
    pub registries: Vec<String>,
    /// See [`Carried::secrets`].
    pub secret_settings: Vec<&'static str>,
    pub install: Install,
    /// The branch whose pushes run the GitHub Actions workflow (GitLab knows its own).
    pub branch: String,
    /// Whether the ISO job uploads the ISOs with its output directory.
    pub upload_iso: bool,
}

/// The CI files' contents, with the name of every CI secret they read.
pub struct Pipeline<'a> {
    jobs: &'a [Job],
    build: Vec<String>,
    sites: Vec<Site>,
    logins: Vec<Login>,
    settings: Vec<&'static str>,
    install: Install,
    branch: String,
    upload_iso: bool,
}

/// A site's user-data: the CI secret holding it and the file the jobs write it to.
struct Site {
    name: String,
    secret: String,
    file: String,
}

/// A registry and the CI secrets holding its username and password.
struct Login {
    host: String,
    username: String,
    password: String,
}

/// A CI secret the files read and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Secret {
    pub name: String,
    pub holds: String,
}

/// The CI system a file is for.
#[derive(Clone, Copy, PartialEq, Eq)]
enum System {
    GithubActions,
    GitlabCi,
}

/// `words` joined by `_`, upper-case, every character but ASCII letters and digits as `_`:
/// a name both CI systems accept for a secret.
fn secret_name(words: &[&str]) -> String {
    words
        .join("_")
        .chars()
        .map(|c| match c.is_ascii_alphanumeric() {
            true => c.to_ascii_uppercase(),
            false => '_',
        })
        .collect()
}

/// Text for a comment line: control characters (a line break would end the comment) as `?`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

impl<'a> Pipeline<'a> {
    /// Name the CI secrets: `FORGE_USER_DATA` for one site, else `FORGE_USER_DATA_<STEM>` for
    /// each; `FORGE_REGISTRY_<HOST>_USERNAME` and `_PASSWORD` for each registry; `FORGE_<NAME>`
    /// for each secret setting. Two inputs that would share a secret are an error.
    pub fn new(request: Request<'a>) -> Result<Pipeline<'a>, CiError> {
        if request.branch.is_empty()
            || request
                .branch
                .contains(|c: char| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c))
        {
            return Err(CiError::Branch(request.branch));
        }
        let sites: Vec<Site> = request
            .user_data
            .iter()
            .map(|path| {
                let name = path.file_stem().unwrap_or_default().to_string_lossy();
                let secret = match request.user_data.len() {
                    1 => "FORGE_USER_DATA".to_string(),
                    _ => secret_name(&["FORGE_USER_DATA", &name]),
                };
                Site {
                    file: format!("{name}.yaml"),
                    name: name.into_owned(),
                    secret,
                }
            })
            .collect();
        let logins: Vec<Login> = request
            .registries
            .iter()
            .map(|host| {
                let prefix = secret_name(&["FORGE_REGISTRY", host]);
                Login {
                    host: host.clone(),
                    username: format!("{prefix}_USERNAME"),
                    password: format!("{prefix}_PASSWORD"),
                }
            })
            .collect();
        let named = sites
            .iter()
            .zip(request.user_data)
            .map(|(s, path)| (s.secret.clone(), path.display().to_string()))
            .chain(logins.iter().map(|l| (l.password.clone(), l.host.clone())));
        let mut seen: Vec<(String, String)> = Vec::new();
        for (name, input) in named {
            if let Some((_, first)) = seen.iter().find(|(n, _)| *n == name) {
                return Err(CiError::Clash {
                    first: first.clone(),
                    second: input,
                    name,
                });
            }
            seen.push((name, input));
        }
        Ok(Pipeline {
            jobs: request.jobs,
            build: request.build,
            sites,
            logins,
            settings: request.secret_settings,
            install: request.install,
            branch: request.branch,
            upload_iso: request.upload_iso,
        })
    }

    /// Every CI secret the files read, in the order the README lists their kinds.
    pub fn secrets(&self) -> Vec<Secret> {
        let secret = |name: &str, holds: String| Secret {
            name: name.to_string(),
            holds,
        };
        let mut secrets: Vec<Secret> = self
            .sites
            .iter()
            .map(|s| {
                secret(
                    &s.secret,
                    format!("the user-data of site {}", printable(&s.name)),
                )
            })
            .collect();
        for login in &self.logins {
            let host = &login.host;
            secrets.push(secret(&login.username, format!("the user forge logs in to {host} as (set both or neither: without them, no login)")));
            secrets.push(secret(
                &login.password,
                format!("that user's password at {host}"),
            ));
        }
        for name in &self.settings {
            secrets.push(secret(
                &format!("{ENV_PREFIX}{name}"),
                format!("the {name} setting, which holds a secret"),
            ));
        }
        secrets
    }

    /// The comment at the top of a file: what it is, when it runs, the secrets it reads.
    fn header(&self, system: System) -> String {
        let (runs, kind) = match system {
            System::GithubActions => (
                format!(
                    "on a push to {} and by hand (workflow_dispatch)",
                    printable(&self.branch)
                ),
                "the repository secrets (gh secret set NAME)",
            ),
            System::GitlabCi => (
                "on a push to the default branch and by hand (Run pipeline)".to_string(),
                "the CI/CD variables (masked and protected, the user-data of type File)",
            ),
        };
        let mut out = format!(
            "# Generated by forge plan: one job per image, sharing images through the registry cache.\n\
             # Runs {runs}; its first job builds forge for the others:\n\
             #   cargo install --git {} --rev {} forge\n\
             # It reads {kind}; README, \"CI secrets\":\n",
            self.install.git, self.install.rev
        );
        let secrets = self.secrets();
        let width = secrets.iter().map(|s| s.name.len()).max().unwrap_or(0);
        for s in &secrets {
            out.push_str(&format!("#   {:width$}  {}\n", s.name, s.holds));
        }
        out.push_str(match self.upload_iso {
            true => "# The ISO job uploads the ISOs, which hold the user-data's credentials: whoever can read\n# this pipeline's artifacts can read them.\n",
            false => "# The ISOs are not uploaded (they hold the user-data's credentials); forge plan --upload-iso\n# uploads them.\n",
        });
        out
    }

    /// Fail when a word the shell will run holds a GitHub Actions expression.
    fn expression_free(&self) -> Result<(), CiError> {
        let words = self.build.iter().chain(self.sites.iter().map(|s| &s.file));
        match words.into_iter().find(|w| w.contains("${{")) {
            Some(word) => Err(CiError::Expression(word.clone())),
            None => Ok(()),
        }
    }

    /// `sh` lines logging in to each registry whose two secrets are set, with the password
    /// on standard input.
    fn login_script(&self) -> String {
        let mut out = String::new();
        for Login {
            host,
            username: user,
            password,
        } in &self.logins
        {
            let both = shell_word(&format!(
                "forge: set both {user} and {password} to log in to {host}, or neither"
            ));
            let none = shell_word(&format!(
                "forge: {user} and {password} are not set: {host} is used without logging in"
            ));
            out.push_str(&format!(
                "if [ -n \"${{{user}:-}}\" ] && [ -n \"${{{password}:-}}\" ]; then\n  \
                 printf '%s' \"${password}\" | docker login --username \"${user}\" --password-stdin {}\n\
                 elif [ -n \"${{{user}:-}}${{{password}:-}}\" ]; then\n  \
                 echo {both} >&2\n  exit 1\nelse\n  echo {none}\nfi\n",
                shell_word(host)
            ));
        }
        out
    }

    /// `sh` lines writing each site's user-data from its CI secret into `dir`, readable by
    /// this user alone (a subshell keeps the umask away from the build).
    fn user_data_script(&self, system: System, dir: &str) -> String {
        let mut out = format!("(\n  umask 077\n  mkdir -p {dir}\n");
        for Site { name, secret, file } in &self.sites {
            let target = format!("{dir}/{}", shell_word(file));
            let (test, missing, write) = match system {
                System::GithubActions => (
                    format!("[ -z \"${{{secret}:-}}\" ]"),
                    format!("forge: the secret {secret} (the user-data of site {name}) is not set"),
                    format!("printf '%s' \"${secret}\" > {target}"),
                ),
                System::GitlabCi => (
                    format!("[ ! -f \"${{{secret}:-}}\" ]"),
                    format!("forge: {secret} must be a File-type CI/CD variable holding the user-data of site {name}"),
                    format!("install -m 0600 \"${secret}\" {target}"),
                ),
            };
            out.push_str(&format!(
                "  if {test}; then\n    echo {} >&2\n    exit 1\n  fi\n  {write}\n",
                shell_word(&missing)
            ));
        }
        out.push_str(")\n");
        out
    }

    /// `sh` lines checking the secret settings are set, then the job's `forge build`.
    fn build_script(&self, job: &Job, sites: &str) -> String {
        let mut out = String::new();
        for name in &self.settings {
            let missing = format!(
                "forge: {ENV_PREFIX}{name} (the {name} setting, which holds a secret) is not set"
            );
            out.push_str(&format!(
                "if [ -z \"${{{ENV_PREFIX}{name}:-}}\" ]; then\n  echo {} >&2\n  exit 1\nfi\n",
                shell_word(&missing)
            ));
        }
        out.push_str(&format!(
            "forge build --user-data {sites} {} {}\n",
            shell_words(&self.build),
            shell_words(&job.args)
        ));
        out
    }

    /// The paths of the ISO job's artifact, `output`: the directory, its ISOs left out
    /// unless `--upload-iso` (the excluded pattern second).
    fn artifact(&self, output: &str) -> (String, Option<String>) {
        let output = output.trim_end_matches('/').to_string();
        let isos = (!self.upload_iso).then(|| format!("{output}/**/*.iso"));
        (output, isos)
    }

    /// A GitHub Actions workflow running the jobs on a push to the default branch and by
    /// hand, with read-only repository access; the ISO job uploads its output directory
    /// (the ISOs only with `--upload-iso`).
    pub fn github_actions(&self) -> Result<String, CiError> {
        self.expression_free()?;
        let env = |names: Vec<&str>| -> Value {
            let map: Map<String, Value> = names
                .into_iter()
                .map(|n| (n.to_string(), json!(format!("${{{{ secrets.{n} }}}}"))))
                .collect();
            Value::Object(map)
        };
        let sites = "\"$RUNNER_TEMP/forge-sites\"";
        let mut jobs = Map::new();
        jobs.insert(
            "forge".into(),
            json!({"runs-on": "ubuntu-latest", "steps": [
                {"name": "build forge", "run": self.install.command("\"$RUNNER_TEMP/forge\"")},
                {"uses": "actions/upload-artifact@v4", "with": {"name": "forge", "path": "${{ runner.temp }}/forge/bin/forge", "retention-days": 1}},
            ]}),
        );
        for job in self.jobs {
            let mut steps = vec![
                json!({"uses": "actions/checkout@v4", "with": {"persist-credentials": false}}),
                json!({"uses": "actions/download-artifact@v4", "with": {"name": "forge", "path": "${{ runner.temp }}/forge"}}),
                json!({"name": "put forge on the PATH, the Docker config in the job's temporary directory", "run": "chmod +x \"$RUNNER_TEMP/forge/forge\"\necho \"$RUNNER_TEMP/forge\" >> \"$GITHUB_PATH\"\necho \"DOCKER_CONFIG=$RUNNER_TEMP/docker\" >> \"$GITHUB_ENV\"\n"}),
            ];
            if !self.logins.is_empty() {
                let names = self
                    .logins
                    .iter()
                    .flat_map(|l| [l.username.as_str(), l.password.as_str()])
                    .collect();
                steps.push(json!({"name": "log in to the registries", "env": env(names), "run": self.login_script()}));
            }
            let names = self.sites.iter().map(|s| s.secret.as_str()).collect();
            steps.push(json!({"name": "write the user-data", "env": env(names), "run": self.user_data_script(System::GithubActions, sites)}));
            let mut build = Map::new();
            build.insert(
                "name".into(),
                json!(format!("forge build --only {}", only(job))),
            );
            if !self.settings.is_empty() {
                let names: Vec<String> = self
                    .settings
                    .iter()
                    .map(|n| format!("{ENV_PREFIX}{n}"))
                    .collect();
                build.insert(
                    "env".into(),
                    env(names.iter().map(String::as_str).collect()),
                );
            }
            build.insert("run".into(), json!(self.build_script(job, sites)));
            steps.push(Value::Object(build));
            if let Some(output) = &job.artifact {
                let (path, isos) = self.artifact(output);
                let path = match isos {
                    Some(isos) => format!("{path}\n!{isos}\n"),
                    None => path,
                };
                steps.push(json!({"uses": "actions/upload-artifact@v4", "with": {"name": "output", "path": path}}));
            }
            let mut entry = Map::new();
            entry.insert("runs-on".into(), json!("ubuntu-latest"));
            let needs: Vec<&str> = std::iter::once("forge")
                .chain(job.needs.iter().map(String::as_str))
                .collect();
            entry.insert("needs".into(), json!(needs));
            entry.insert("steps".into(), Value::Array(steps));
            jobs.insert(job.id.clone(), Value::Object(entry));
        }
        let workflow = json!({
            "name": "forge",
            "on": {"push": {"branches": [self.branch]}, "workflow_dispatch": {}},
            "permissions": {"contents": "read"},
            "jobs": jobs,
        });
        Ok(format!(
            "{}{}",
            self.header(System::GithubActions),
            yaml(&workflow, 0)
        ))
    }

    /// A GitLab CI pipeline running the jobs in five stages (forge first) on a push to the
    /// default branch and by hand; the ISO job keeps its output directory as an artifact (the
    /// ISOs only with `--upload-iso`).
    pub fn gitlab_ci(&self) -> String {
        let mut doc = Map::new();
        doc.insert(
            "stages".into(),
            json!(["forge", "base", "providers", "installer", "iso"]),
        );
        doc.insert(
            "workflow".into(),
            json!({"rules": [
                {"if": "$CI_PIPELINE_SOURCE == \"push\" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"},
                {"if": "$CI_PIPELINE_SOURCE == \"web\""},
            ]}),
        );
        doc.insert(
            "forge".into(),
            json!({"stage": "forge", "script": [self.install.command("\"$CI_PROJECT_DIR/.forge\"")],
                   "artifacts": {"paths": [".forge/bin/forge"], "expire_in": "1 day"}}),
        );
        let sites = "\"$FORGE_TMP/sites\"";
        for job in self.jobs {
            let stage = match job.id.as_str() {
                id if id.starts_with("provider-") => "providers",
                id => id,
            };
            let mut script = vec![
                "FORGE_TMP=\"$(mktemp -d)\" && trap 'rm -rf \"$FORGE_TMP\"' EXIT".to_string(),
                "mv .forge/bin/forge \"$FORGE_TMP/forge\" && rm -r .forge && export PATH=\"$FORGE_TMP:$PATH\" DOCKER_CONFIG=\"$FORGE_TMP/docker\"".to_string(),
            ];
            if !self.logins.is_empty() {
                script.push(self.login_script());
            }
            script.push(self.user_data_script(System::GitlabCi, sites));
            script.push(self.build_script(job, sites));
            let mut entry = Map::new();
            entry.insert("stage".into(), json!(stage));
            let needs: Vec<&str> = std::iter::once("forge")
                .chain(job.needs.iter().map(String::as_str))
                .collect();
            entry.insert("needs".into(), json!(needs));
            entry.insert("script".into(), json!(script));
            if let Some(output) = &job.artifact {
                let (path, isos) = self.artifact(output);
                let mut artifacts = json!({"paths": [path]});
                if let Some(isos) = isos {
                    artifacts["exclude"] = json!([isos]);
                }
                entry.insert("artifacts".into(), artifacts);
            }
            doc.insert(job.id.clone(), Value::Object(entry));
        }
        format!(
            "{}{}",
            self.header(System::GitlabCi),
            yaml(&Value::Object(doc), 0)
        )
    }
}

/// The `--only` value of a job.
fn only(job: &Job) -> &str {
    job.args.get(1).map_or("", String::as_str)
}

/// Words as one POSIX shell command line, quoted where needed.
pub fn shell_words(words: &[String]) -> String {
    words
        .iter()
        .map(|w| shell_word(w))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One word for a POSIX shell, single-quoted unless it is plain.
fn shell_word(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%".contains(c));
    match plain {
        true => word.to_string(),
        false => format!("'{}'", word.replace('\'', r"'\''")),
    }
}

/// `value` as block-style YAML (mappings, sequences, scalars), indented by `indent` spaces.
fn yaml(value: &Value, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = String::new();
    match value {
        Value::Object(map) if map.is_empty() => out.push_str("{}\n"),
        Value::Object(map) => {
            for (key, value) in map {
                out.push_str(&format!("{pad}{}:", scalar(&Value::String(key.clone()))));
                match value {
                    Value::String(text) if literal(text) => {
                        out.push_str(&block(text, indent + 2));
                    }
                    Value::Object(m) if !m.is_empty() => {
                        out.push('\n');
                        out.push_str(&yaml(value, indent + 2));
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push('\n');
                        out.push_str(&yaml(value, indent + 2));
                    }
                    _ => out.push_str(&format!(" {}", yaml(value, 0))),
                }
            }
        }
        Value::Array(items) if items.is_empty() => out.push_str("[]\n"),
        Value::Array(items) => {
            for item in items {
                let nested = yaml(item, indent + 2);
                match item {
                    Value::String(text) if literal(text) => {
                        out.push_str(&format!("{pad}-{}", block(text, indent + 2)));
                    }
                    Value::Object(m) if !m.is_empty() => {
                        out.push_str(&format!("{pad}- {}", &nested[indent + 2..]));
                    }
                    Value::Array(a) if !a.is_empty() => {
                        out.push_str(&format!("{pad}-\n{nested}"));
                    }
                    _ => out.push_str(&format!("{pad}- {}", yaml(item, 0))),
                }
            }
        }
        scalar_value => out.push_str(&format!("{}\n", scalar(scalar_value))),
    }
    out
}

/// Whether a string reads best as a literal block (`|`, a shell script): several lines ending
/// in one line break, the first not indented, no other control character, no trailing blank.
fn literal(text: &str) -> bool {
    text.contains('\n')
        && text.ends_with('\n')
        && !text.ends_with("\n\n")
        && !text.starts_with([' ', '\n'])
        && !text.chars().any(|c| c.is_control() && c != '\n')
        && text.lines().all(|l| !l.ends_with(' '))
}

/// ` |` and `text`'s lines indented by `indent` spaces (empty lines left empty).
fn block(text: &str, indent: usize) -> String {
    let pad = " ".repeat(indent);
    let mut out = " |\n".to_string();
    for line in text.lines() {
        match line.is_empty() {
            true => out.push('\n'),
            false => out.push_str(&format!("{pad}{line}\n")),
        }
    }
    out
}

/// A scalar: plain when YAML reads it back as the same string, else double-quoted (JSON's
/// escapes are YAML's).
fn scalar(value: &Value) -> String {
    let Value::String(text) = value else {
        return value.to_string();
    };
    let reserved = [
        "true", "false", "yes", "no", "on", "off", "null", "~", "y", "n",
    ];
    let plain = !text.is_empty()
        && !reserved.contains(&text.to_ascii_lowercase().as_str())
        && text.parse::<f64>().is_err()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./@=+,%'\"$ ".contains(c))
        && !text.starts_with(['-', ' ', '\'', '"', '@', '%'])
        && !text.ends_with(' ')
        && !text.contains(" #");
    match plain {
        true => text.clone(),
        false => Value::String(text.clone()).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_reads_back_as_the_same_document() {
        let doc = json!({
            "on": {"push": {}},
            "jobs": {"a": {"needs": ["b"], "steps": [{"run": "forge build --set 'X=a b'", "with": {"path": "build"}}, {"uses": "x@v4"}]}},
            "odd": ["yes", "1.30", "-x", "a: b", "", "#c", "two\nlines\n", "x\n\n  y\n"],
            "script": {"run": "if true; then\n  echo 'a: b' # c\nfi\n", "no-end": "a\nb"},
        });
        let text = yaml(&doc, 0);
        let back = crate::yaml::parse(&text).unwrap().root.to_json();
        assert_eq!(back, doc, "{text}");
    }

    #[test]
    fn settings_from_the_environment_are_carried_as_flags_and_secret_ones_by_name() {
        let settings = crate::config::resolve(&crate::config::Inputs {
            env: [
                ("FORGE_CUSTOM_TAG", "ci"),
                ("FORGE_HTTPS_PROXY", "http://user:Pr0xy-Secret@proxy:3128"),
                ("FORGE_NO_PROXY", "10.0.0.0/8"),
                ("HOME", "/root"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .to_vec(),
            secret_files: vec![(
                "http-proxy".into(),
                PathBuf::from("proxy.txt"),
                "http://proxy:3128".into(),
            )],
            sets: vec![("OS_VERSION".into(), "24.04".into())],
            ..Default::default()
        });
        let carried = carried(&settings.values);
        assert_eq!(
            carried.sets,
            ["--set", "CUSTOM_TAG=ci", "--set", "NO_PROXY=10.0.0.0/8"]
        );
        assert_eq!(carried.secrets, ["HTTP_PROXY", "HTTPS_PROXY"]);
    }

    /// A request for `jobs` of `user_data`, logging in to `registries`, `build` the words.
    fn request<'a>(
        jobs: &'a [Job],
        user_data: &'a [PathBuf],
        registries: &[&str],
        build: &[&str],
    ) -> Request<'a> {
        Request {
            jobs,
            build: build.iter().map(|w| w.to_string()).collect(),
            user_data,
            registries: registries.iter().map(|r| r.to_string()).collect(),
            secret_settings: vec!["HTTPS_PROXY"],
            install: Install::new("https://git.example.com/forge.git", Some("0123abcd")).unwrap(),
            branch: "main".into(),
            upload_iso: false,
        }
    }

    fn pipeline<'a>(
        jobs: &'a [Job],
        user_data: &'a [PathBuf],
        registries: &[&str],
        build: &[&str],
    ) -> Result<Pipeline<'a>, CiError> {
        Pipeline::new(request(jobs, user_data, registries, build))
    }

    fn base_job() -> Vec<Job> {
        let args: Vec<String> = ["--only", "base"].map(String::from).to_vec();
        vec![Job {
            id: "base".into(),
            needs: Vec::new(),
            command: args.clone(),
            steps: Vec::new(),
            artifact: None,
            args,
        }]
    }

    fn names(pipeline: &Pipeline) -> Vec<String> {
        pipeline.secrets().into_iter().map(|s| s.name).collect()
    }

    #[test]
    fn secrets_are_named_after_the_sites_the_registries_and_the_settings() {
        let jobs = base_job();
        let one = [PathBuf::from("/home/me/user-data")];
        let p = pipeline(&jobs, &one, &["127.0.0.1:5000"], &[]).unwrap();
        assert_eq!(
            names(&p),
            [
                "FORGE_USER_DATA",
                "FORGE_REGISTRY_127_0_0_1_5000_USERNAME",
                "FORGE_REGISTRY_127_0_0_1_5000_PASSWORD",
                "FORGE_HTTPS_PROXY"
            ]
        );
        let two = [
            PathBuf::from("sites/store-1.yaml"),
            PathBuf::from("sites/Store.2.yaml"),
        ];
        let p = pipeline(&jobs, &two, &[], &[]).unwrap();
        assert_eq!(
            names(&p)[..2],
            ["FORGE_USER_DATA_STORE_1", "FORGE_USER_DATA_STORE_2"]
        );
        let clash = [
            PathBuf::from("a/store-1.yaml"),
            PathBuf::from("b/store_1.yaml"),
        ];
        let e = pipeline(&jobs, &clash, &[], &[]).err().unwrap();
        assert_eq!(
            e.to_string(),
            "a/store-1.yaml and b/store_1.yaml would both be read from the CI secret FORGE_USER_DATA_STORE_1; rename one"
        );
        let e = pipeline(&jobs, &one, &["a-b.example", "a.b.example"], &[])
            .err()
            .unwrap();
        assert!(matches!(e, CiError::Clash { .. }), "{e}");
    }

    #[test]
    fn the_forge_to_install_and_the_branch_are_checked() {
        let git = "https://git.example.com/forge.git";
        for rev in ["abc", "0123abcz", &"a".repeat(41)] {
            let e = Install::new(git, Some(rev)).unwrap_err();
            assert!(matches!(e, CiError::Commit(_)), "{rev}: {e}");
        }
        assert!(matches!(
            Install::new("https://x/forge.git\nrm -rf /", Some("0123abcd")),
            Err(CiError::Repository(_))
        ));
        assert!(Install::new(git, Some("0123ABCD")).is_ok());
        let jobs = base_job();
        let one = [PathBuf::from("user-data")];
        for branch in ["", "a b", "refs:main"] {
            let request = Request {
                branch: branch.into(),
                ..request(&jobs, &one, &[], &[])
            };
            let e = Pipeline::new(request).err().unwrap();
            assert!(matches!(e, CiError::Branch(_)), "{branch}: {e}");
        }
    }

    #[test]
    fn a_github_expression_in_a_word_is_refused_and_scripts_read_secrets_from_the_environment() {
        let jobs = base_job();
        let one = [PathBuf::from("user-data")];
        let p = pipeline(
            &jobs,
            &one,
            &[],
            &["--set", "CUSTOM_TAG=${{ github.actor }}"],
        )
        .unwrap();
        let e = p.github_actions().unwrap_err();
        assert!(matches!(e, CiError::Expression(_)), "{e}");
        let p = pipeline(&jobs, &one, &["127.0.0.1:5000"], &["--output", "build"]).unwrap();
        let workflow = p.github_actions().unwrap();
        let doc = crate::yaml::parse(&workflow).unwrap().root.to_json();
        let steps = doc["jobs"]["base"]["steps"].as_array().unwrap();
        for step in steps {
            let run = step["run"].as_str().unwrap_or_default();
            assert!(!run.contains("${{"), "{run}");
            for (name, value) in step["env"].as_object().into_iter().flatten() {
                assert_eq!(value, &json!(format!("${{{{ secrets.{name} }}}}")));
            }
        }
    }

    #[test]
    fn shell_words_quote_what_the_shell_would_split_or_expand() {
        let words = ["forge", "--set", "A=b c", "it's", "$HOME"].map(String::from);
        assert_eq!(
            shell_words(&words),
            r"forge --set 'A=b c' 'it'\''s' '$HOME'"
        );
    }
}
