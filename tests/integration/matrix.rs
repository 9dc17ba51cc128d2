//! Many versions across CI runners: `forge plan` splits the build of the CanvOS-shaped example
//! into jobs (base, one per provider image, installer, ISO); run one by one on an engine
//! emptied of the build's images between them, as fresh runners would, against a TLS +
//! htpasswd registry, they give the provider images and the ISO one `forge build` gives, the
//! base image built once; the emitted GitHub Actions and GitLab CI files pass the schemas
//! their vendors publish (check-jsonschema), hold no secret given to `forge plan`, and run as
//! generated: their `forge` and `base` jobs, on emulated runners with fake CI secrets, log in
//! to a registry, write the user-data 0600 and push the base image to the cache.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;
use support::{checkout_copy, docker, forge_command, text, Pki, Registry};

tests! {
    the_plans_jobs_run_one_by_one_give_what_one_build_gives_with_the_base_built_once => [
        Fixtures,
        Commands(&["docker-registry", "htpasswd", "xorriso"]),
    ],
    the_emitted_ci_files_pass_their_published_schemas_and_carry_no_secret => [
        Fixtures,
        Commands(&["check-jsonschema", "shellcheck", "dash"]),
    ],
    the_ci_files_run_as_generated_logging_in_and_writing_the_user_data_from_ci_secrets => [
        Fixtures,
        Commands(&["docker-registry", "htpasswd"]),
    ],
    two_engines_build_a_four_version_matrix_between_them_then_push_it => [
        Fixtures,
        Commands(&["docker-registry", "htpasswd", "skopeo", "dockerd", "ip"]),
    ],
}

static ENGINE: Mutex<()> = Mutex::new(());

const EPOCH: &str = "1700000000";

/// A copy of the example checkout whose images are this test's own (a marker in the build
/// context of the user's Dockerfile changes every input hash), with its whole matrix
/// (K8S_VERSION empty: both versions of its k8s_version.json) pushed to `registry`.
fn matrix_checkout(dir: &Path, registry: &str) -> (PathBuf, Vec<String>) {
    let checkout = checkout_copy(dir);
    // The example's registryCredentials would send the provider images the jobs push to
    // registry.example.com too: these sites pull them from IMAGE_REGISTRY.
    let user_data = std::fs::read_to_string(checkout.join("user-data")).unwrap();
    let kept: String = user_data
        .split_inclusive('\n')
        .take_while(|l| !l.starts_with("  registryCredentials:"))
        .collect();
    std::fs::write(checkout.join("user-data"), kept).unwrap();
    std::fs::write(
        checkout.join("forge-matrix-test"),
        format!("{:?}\n", std::time::SystemTime::now()),
    )
    .unwrap();
    let sets = vec![
        "--set".to_string(),
        "K8S_VERSION=".to_string(),
        "--set".to_string(),
        format!("IMAGE_REGISTRY={registry}/edge"),
    ];
    (checkout, sets)
}

/// `forge` (the binary under test) in `checkout`, with the registry's credentials.
fn forge_in(checkout: &Path, docker_config: &Path, words: &[String]) -> Output {
    forge_command()
        .current_dir(checkout)
        .args(words)
        .env("DOCKER_CONFIG", docker_config)
        .env("SOURCE_DATE_EPOCH", EPOCH)
        .output()
        .unwrap()
}

/// Remove every tag of the build's images (the plan's, the pushed providers, the cache's):
/// the engine of a fresh runner.
fn forget(images: &[String], registry: &str) {
    let listed =
        String::from_utf8(docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout)
            .unwrap();
    for image in listed.lines() {
        if images.iter().any(|i| i == image) || image.starts_with(&format!("{registry}/")) {
            docker(&["rmi", image]);
        }
    }
}

/// The provider images' digests and the ISO's sha256 a run's manifest records.
fn results(checkout: &Path) -> (Vec<(String, String)>, Option<String>) {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(checkout.join("build/manifest.json")).unwrap())
            .unwrap();
    let artifacts = manifest["artifacts"].as_array().unwrap();
    let providers = artifacts
        .iter()
        .filter(|a| a["kind"] == "provider")
        .map(|a| {
            (
                a["reference"].as_str().unwrap().to_string(),
                a["digest"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    let iso = artifacts
        .iter()
        .find(|a| a["kind"] == "iso")
        .map(|a| a["sha256"].as_str().unwrap().to_string());
    (providers, iso)
}

fn the_plans_jobs_run_one_by_one_give_what_one_build_gives_with_the_base_built_once() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let host = registry.host();
    let certs_d = PathBuf::from("/etc/docker/certs.d").join(&host);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::write(certs_d.join("ca.crt"), &pki.ca_pem).unwrap();
    let docker_config = work.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        support::auth_file(std::slice::from_ref(&host)),
    )
    .unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let (checkout, sets) = matrix_checkout(work.path(), &host);
    let ca_flag = ["--registry-ca", ca.to_str().unwrap(), "--progress", "plain"].map(String::from);

    let mut plan_words: Vec<String> = ["plan", "--arg", ".arg", "--user-data", "user-data"]
        .map(String::from)
        .to_vec();
    plan_words.extend(["--format", "json"].map(String::from));
    plan_words.extend(sets.iter().cloned());
    let planned = forge_in(&checkout, &docker_config, &plan_words);
    assert!(planned.status.success(), "{}", text(&planned));
    let plan: Value = serde_json::from_slice(&planned.stdout).unwrap();
    let jobs = plan["jobs"].as_array().unwrap();
    let ids: Vec<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(
        ids,
        [
            "base",
            "provider-1-32-3",
            "provider-1-33-1",
            "installer",
            "iso"
        ]
    );
    let images: Vec<String> = jobs
        .iter()
        .flat_map(|j| j["steps"].as_array().unwrap().clone())
        .map(|s| s["image"].as_str().unwrap().to_string())
        .collect();

    let mut said = Vec::new();
    let mut providers = Vec::new();
    let mut iso = None;
    for job in jobs {
        forget(&images, &host);
        let command: Vec<String> = job["command"]
            .as_array()
            .unwrap()
            .iter()
            .skip(1) // `forge`: the binary under test
            .map(|w| w.as_str().unwrap().to_string())
            .chain(ca_flag.clone())
            .collect();
        let out = forge_in(&checkout, &docker_config, &command);
        assert!(out.status.success(), "job {}: {}", job["id"], text(&out));
        let (mut pushed, mastered) = results(&checkout);
        providers.append(&mut pushed);
        iso = iso.or(mastered);
        said.push((job["id"].as_str().unwrap().to_string(), text(&out)));
    }
    let built_base: Vec<&str> = said
        .iter()
        .filter(|(_, out)| out.contains("] base: built "))
        .map(|(id, _)| id.as_str())
        .collect();
    assert_eq!(built_base, ["base"], "the base is built by its job alone");
    for (id, out) in &said[1..4] {
        assert!(out.contains("] base: pulled "), "{id}: {out}");
    }
    assert!(said[4].1.contains("] installer: pulled "), "{}", said[4].1);
    assert_eq!(providers.len(), 2, "{providers:?}");

    // One build of everything, on a fresh engine, from the cache the jobs filled.
    forget(&images, &host);
    let mut whole: Vec<String> = ["build", "--arg", ".arg", "--user-data", "user-data"]
        .map(String::from)
        .to_vec();
    whole.extend(sets.iter().cloned());
    whole.extend(["--push", "--cache-from", "registry"].map(String::from));
    whole.extend(ca_flag);
    let out = forge_in(&checkout, &docker_config, &whole);
    forget(&images, &host);
    let _ = std::fs::remove_dir_all(&certs_d);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("] base: built "), "{}", text(&out));
    let (mut once, once_iso) = results(&checkout);
    providers.sort();
    once.sort();
    assert_eq!(once, providers, "provider digests");
    assert_eq!(once_iso, iso, "ISO sha256");
}

/// The forge repository and commit the CI-file tests name (`--forge-git`, `--forge-rev`).
const FORGE_GIT: &str = "https://git.example.com/edge/forge.git";
const FORGE_REV: &str = "0123abcd";
/// The sites of the CI-file tests: file stem, registry password, edge host token.
const SITES: [(&str, &str, &str); 2] = [
    ("site-a", "Site-A-Passw0rd!", "TokenA0123456789abcdefXYZ"),
    ("site-b", "Site-B-Passw0rd!", "TokenB0123456789abcdefXYZ"),
];
/// HTTPS_PROXY from the environment and HTTP_PROXY from --secret-file: settings holding a secret.
const ENV_PROXY: &str = "http://env-user:Env-Pr0xy-Secret@proxy.example.com:3128";
const FILE_PROXY: &str = "http://file-user:File-Pr0xy-Secret@proxy.example.com:3128";

/// What `forge plan` is given for CI files, secrets in every form it reads them: the sites'
/// user-data (a directory outside the checkout), a --secret-file, FORGE_HTTPS_PROXY, and a
/// Docker config holding credentials.
struct CiInputs {
    dir: tempfile::TempDir,
}

impl CiInputs {
    /// The inputs; each site's user-data also declares `registry` (plain HTTP, no
    /// credentials: those come from `docker login`) when given.
    fn new(registry: Option<&str>) -> CiInputs {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let sites = dir.path().join("sites");
        std::fs::create_dir(&sites).unwrap();
        for (name, password, token) in SITES {
            let local = registry.map_or(String::new(), |host| {
                format!("      - domain: \"{host}\"\n        insecure: true\n")
            });
            let text = format!(
                "#cloud-config\nstylus:\n  site:\n    paletteEndpoint: api.spectrocloud.com\n    edgeHostToken: {token}\n    projectName: edge-stores\n    name: {name}\n  externalRegistries:\n    registries:\n      - domain: registry.example.com\n        username: edge-puller\n        password: \"{password}\"\n{local}"
            );
            std::fs::write(sites.join(format!("{name}.yaml")), text).unwrap();
        }
        let proxy = dir.path().join("proxy");
        std::fs::write(&proxy, format!("{FILE_PROXY}\n")).unwrap();
        std::fs::set_permissions(&proxy, std::fs::Permissions::from_mode(0o600)).unwrap();
        let docker = dir.path().join("docker");
        std::fs::create_dir(&docker).unwrap();
        let hosts = ["registry.example.com".to_string()];
        std::fs::write(docker.join("config.json"), support::auth_file(&hosts)).unwrap();
        CiInputs { dir }
    }

    fn site(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("sites/{name}.yaml"))).unwrap()
    }

    /// `forge plan` of the example with these inputs and `args`.
    fn plan(&self, args: &[&str]) -> Output {
        forge_command()
            .current_dir(support::example())
            .args(["plan", "--arg", ".arg", "--user-data"])
            .arg(self.dir.path().join("sites"))
            .arg("--secret-file")
            .arg(format!(
                "HTTP_PROXY={}",
                self.dir.path().join("proxy").display()
            ))
            .args(["--forge-git", FORGE_GIT, "--forge-rev", FORGE_REV])
            .args(args)
            .env("FORGE_HTTPS_PROXY", ENV_PROXY)
            .env("FORGE_CUSTOM_TAG", "ci")
            .env("DOCKER_CONFIG", self.dir.path().join("docker"))
            .output()
            .unwrap()
    }

    /// Every secret value given, in each form it might leak in.
    fn secrets(&self) -> Vec<String> {
        use base64::Engine as _;
        let mut secrets: Vec<String> = SITES
            .iter()
            .flat_map(|(_, password, token)| [password.to_string(), token.to_string()])
            .collect();
        secrets
            .extend(["Env-Pr0xy-Secret", "File-Pr0xy-Secret", support::PASSWORD].map(String::from));
        secrets.push(base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            support::USER,
            support::PASSWORD
        )));
        secrets
    }
}

fn check_schema(schema: &str, file: &Path) -> Output {
    Command::new("check-jsonschema")
        .args(["--builtin-schema", schema])
        .arg(file)
        .output()
        .unwrap()
}

/// A CI file as a JSON value.
fn parsed(text: &str) -> Value {
    forge::yaml::parse(text).unwrap().root.to_json()
}

/// Each job's shell script: a GitHub Actions step's `run`, a GitLab job's `script` lines
/// joined (GitLab runs them in one shell).
fn scripts(format: &str, doc: &Value) -> Vec<(String, String)> {
    let mut scripts = Vec::new();
    let jobs = match format {
        "github-actions" => doc["jobs"].as_object().unwrap().clone(),
        _ => doc.as_object().unwrap().clone(),
    };
    for (id, job) in jobs {
        if format == "github-actions" {
            for step in job["steps"].as_array().unwrap() {
                if let Some(run) = step["run"].as_str() {
                    scripts.push((id.clone(), run.to_string()));
                }
            }
        } else if let Some(lines) = job["script"].as_array() {
            let lines: Vec<&str> = lines.iter().map(|l| l.as_str().unwrap()).collect();
            scripts.push((id.clone(), lines.join("\n") + "\n"));
        }
    }
    scripts
}

fn the_emitted_ci_files_pass_their_published_schemas_and_carry_no_secret() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let inputs = CiInputs::new(None);
    let work = tempfile::tempdir().unwrap();
    for (format, schema, file, shell) in [
        (
            "github-actions",
            "vendor.github-workflows",
            "forge.yml",
            "bash",
        ),
        ("gitlab-ci", "vendor.gitlab-ci", ".gitlab-ci.yml", "sh"),
    ] {
        for upload in [false, true] {
            let mut args = vec!["--set", "K8S_VERSION=", "--format", format];
            if upload {
                args.push("--upload-iso");
            }
            let out = inputs.plan(&args);
            assert!(out.status.success(), "{}", text(&out));
            let said = text(&out);
            for secret in inputs.secrets() {
                assert!(!said.contains(&secret), "{format}: {secret} in\n{said}");
            }
            let yaml = String::from_utf8(out.stdout).unwrap();
            let path = work.path().join(file);
            std::fs::write(&path, &yaml).unwrap();
            let checked = check_schema(schema, &path);
            assert!(
                checked.status.success(),
                "{format}: {}\n{yaml}",
                text(&checked)
            );

            // No file of the machine that planned: the user-data comes from CI secrets.
            let local = inputs.dir.path().display().to_string();
            assert!(!yaml.contains(&local), "{format} names {local}:\n{yaml}");
            assert!(!yaml.contains("--secret-file"), "{yaml}");
            let sites = match format {
                "github-actions" => "--user-data \"$RUNNER_TEMP/forge-sites\" ",
                _ => "--user-data \"$FORGE_TMP/sites\" ",
            };
            assert_eq!(
                yaml.matches("--user-data").count(),
                yaml.matches(sites).count(),
                "{yaml}"
            );
            assert_eq!(yaml.matches(sites).count(), 5, "one build per job: {yaml}");
            assert_eq!(yaml.matches("--set CUSTOM_TAG=ci ").count(), 5, "{yaml}");
            let header: String = yaml.lines().take_while(|l| l.starts_with('#')).collect();
            for name in [
                "FORGE_USER_DATA_SITE_A",
                "FORGE_USER_DATA_SITE_B",
                "FORGE_REGISTRY_REGISTRY_EXAMPLE_COM_USERNAME",
                "FORGE_REGISTRY_REGISTRY_EXAMPLE_COM_PASSWORD",
                "FORGE_HTTP_PROXY",
                "FORGE_HTTPS_PROXY",
            ] {
                assert!(header.contains(name), "{name} in the header:\n{header}");
            }
            assert!(
                yaml.contains(
                    "--only provider:1.33.1 --cache-from registry --cache-to registry --push"
                ),
                "{yaml}"
            );

            let doc = parsed(&yaml);
            let (isos, upload_steps) = match format {
                "github-actions" => {
                    assert_eq!(
                        doc["on"],
                        serde_json::json!({"push": {"branches": ["main"]}, "workflow_dispatch": {}})
                    );
                    assert_eq!(doc["permissions"], serde_json::json!({"contents": "read"}));
                    let steps: Vec<&Value> = doc["jobs"]
                        .as_object()
                        .unwrap()
                        .values()
                        .flat_map(|j| j["steps"].as_array().unwrap())
                        .collect();
                    for step in &steps {
                        for (name, value) in step["env"].as_object().into_iter().flatten() {
                            assert_eq!(value, &Value::from(format!("${{{{ secrets.{name} }}}}")));
                        }
                        if step["uses"] == "actions/checkout@v4" {
                            assert_eq!(step["with"]["persist-credentials"], false);
                        }
                    }
                    let uploads: Vec<String> = steps
                        .iter()
                        .filter(|s| s["uses"] == "actions/upload-artifact@v4")
                        .map(|s| s["with"]["path"].as_str().unwrap().to_string())
                        .collect();
                    assert_eq!(uploads[0], "${{ runner.temp }}/forge/bin/forge");
                    (uploads[1].contains("!build/**/*.iso"), uploads.len())
                }
                _ => {
                    assert_eq!(
                        doc["workflow"]["rules"],
                        serde_json::json!([
                            {"if": "$CI_PIPELINE_SOURCE == \"push\" && $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"},
                            {"if": "$CI_PIPELINE_SOURCE == \"web\""}
                        ])
                    );
                    for (id, job) in doc.as_object().unwrap() {
                        if job.get("stage").is_some() && id != "forge" {
                            assert_eq!(job["needs"][0], "forge", "{id}");
                        }
                    }
                    let artifacts = &doc["iso"]["artifacts"];
                    assert_eq!(artifacts["paths"], serde_json::json!(["build"]));
                    (
                        artifacts["exclude"] == serde_json::json!(["build/**/*.iso"]),
                        2,
                    )
                }
            };
            assert_eq!(
                isos, !upload,
                "{format} --upload-iso {upload}: ISOs left out: {isos}"
            );
            assert_eq!(upload_steps, 2, "the forge binary and the ISO job's output");

            for (job, script) in scripts(format, &doc) {
                assert!(
                    !script.contains("${{"),
                    "{job}: an expression in a script:\n{script}"
                );
                for line in script.lines().filter(|l| l.contains("echo")) {
                    assert!(
                        !line.contains("$FORGE_") && !line.contains("${FORGE_"),
                        "{job}: a secret echoed: {line}"
                    );
                }
                let file = work.path().join("script.sh");
                std::fs::write(&file, &script).unwrap();
                for check in [
                    &["bash", "-n"][..],
                    &["dash", "-n"],
                    &["shellcheck", "-s", shell],
                ] {
                    let out = Command::new(check[0])
                        .args(&check[1..])
                        .arg(&file)
                        .output()
                        .unwrap();
                    assert!(
                        out.status.success(),
                        "{format} {job} {check:?}: {}\n{script}",
                        text(&out)
                    );
                }
            }
        }
    }
    // A file that breaks the schema is refused: the check is real.
    let broken = work.path().join("broken.yml");
    std::fs::write(&broken, "jobs:\n  base:\n    runs-on: 3\n").unwrap();
    assert!(!check_schema("vendor.github-workflows", &broken)
        .status
        .success());

    // A secret setting on the command line is refused, unsaid; the CI files need --forge-git.
    let set = "HTTPS_PROXY=http://set-user:Set-Pr0xy-Secret@proxy.example.com:3128";
    let out = inputs.plan(&["--set", set, "--format", "github-actions"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("CFG016"), "{}", text(&out));
    assert!(!text(&out).contains("Set-Pr0xy-Secret"), "{}", text(&out));
    let out = forge_command()
        .current_dir(support::example())
        .args([
            "plan",
            "--arg",
            ".arg",
            "--user-data",
            "user-data",
            "--format",
            "gitlab-ci",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--forge-git <URL>"), "{}", text(&out));
}

/// A fake `cargo` for the forge job: records its arguments in `log` and installs the forge
/// under test where `--root` says, as `cargo install` would.
fn fake_cargo(bin: &Path, log: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::create_dir_all(bin).unwrap();
    let script = format!(
        "#!/bin/sh\necho \"$@\" > '{}'\nroot=\nwhile [ $# -gt 0 ]; do [ \"$1\" = --root ] && root=$2; shift; done\nmkdir -p \"$root/bin\" && cp '{}' \"$root/bin/forge\"\n",
        log.display(),
        env!("CARGO_BIN_EXE_forge")
    );
    std::fs::write(bin.join("cargo"), script).unwrap();
    std::fs::set_permissions(bin.join("cargo"), std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The PATH with `bin` first.
fn path_with(bin: &Path) -> String {
    format!("{}:{}", bin.display(), std::env::var("PATH").unwrap())
}

/// `script` run by bash as a CI runner runs it (`-e`, and pipefail for GitLab), in `dir`,
/// with `env` and none of this process's FORGE_* or DOCKER_CONFIG variables.
fn run_script(script: &str, dir: &Path, env: &[(String, String)], file: &Path) -> Output {
    std::fs::write(file, script).unwrap();
    let mut cmd = Command::new("bash");
    cmd.args(["--noprofile", "--norc", "-e", "-o", "pipefail"])
        .arg(file)
        .current_dir(dir)
        .env_remove("DOCKER_CONFIG")
        .env("XDG_CACHE_HOME", support::cache_home());
    for (name, _) in std::env::vars().filter(|(n, _)| n.starts_with("FORGE_")) {
        cmd.env_remove(name);
    }
    cmd.envs(env.iter().map(|(k, v)| (k, v))).output().unwrap()
}

/// Run the GitHub Actions job `id` of `workflow` in `checkout` as a hosted runner would:
/// `uses` steps as their actions do (artifacts kept in `artifacts`), `run` steps by bash with
/// the step's `env` (`${{ secrets.NAME }}` from `secrets`), RUNNER_TEMP emptied first,
/// GITHUB_PATH and GITHUB_ENV honoured. Returns the job's log and its RUNNER_TEMP.
fn github_job(
    workflow: &Value,
    id: &str,
    checkout: &Path,
    secrets: &[(String, String)],
    work: &Path,
) -> (String, PathBuf) {
    let temp = work.join(format!("runner-{id}/temp"));
    let files = work.join(format!("runner-{id}/files"));
    std::fs::create_dir_all(&temp).unwrap();
    std::fs::create_dir_all(&files).unwrap();
    let (github_path, github_env) = (files.join("path"), files.join("env"));
    std::fs::write(&github_path, "").unwrap();
    std::fs::write(&github_env, "").unwrap();
    let artifacts = work.join("artifacts");
    std::fs::create_dir_all(&artifacts).unwrap();
    let expand = |text: &str| -> String {
        let mut text = text.replace("${{ runner.temp }}", temp.to_str().unwrap());
        while let Some(start) = text.find("${{ secrets.") {
            let end = start + text[start..].find("}}").unwrap() + 2;
            let name = text[start + 12..end - 2].trim();
            let value = secrets
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v);
            text.replace_range(start..end, value);
        }
        text
    };
    let mut log = String::new();
    for (n, step) in workflow["jobs"][id]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
    {
        let with = |key: &str| expand(step["with"][key].as_str().unwrap());
        match step["uses"].as_str().map(|u| u.split('@').next().unwrap()) {
            Some("actions/checkout") => continue,
            Some("actions/upload-artifact") => {
                std::fs::copy(with("path"), artifacts.join(with("name"))).unwrap();
                continue;
            }
            Some("actions/download-artifact") => {
                // A downloaded file loses its mode: 0644.
                let name = with("name");
                std::fs::create_dir_all(with("path")).unwrap();
                let to = Path::new(&with("path")).join(&name);
                std::fs::write(&to, std::fs::read(artifacts.join(&name)).unwrap()).unwrap();
                continue;
            }
            Some(other) => panic!("{id}: no emulation of {other}"),
            None => {}
        }
        let mut env: Vec<(String, String)> = vec![
            ("RUNNER_TEMP".into(), temp.display().to_string()),
            ("GITHUB_PATH".into(), github_path.display().to_string()),
            ("GITHUB_ENV".into(), github_env.display().to_string()),
        ];
        let added: Vec<String> = std::fs::read_to_string(&github_path)
            .unwrap()
            .lines()
            .rev()
            .map(String::from)
            .collect();
        let bin = work.join("bin");
        let path = path_with(&bin);
        env.push(("PATH".into(), [added, vec![path]].concat().join(":")));
        for line in std::fs::read_to_string(&github_env).unwrap().lines() {
            let (k, v) = line.split_once('=').unwrap();
            env.push((k.into(), v.into()));
        }
        for (k, v) in step["env"].as_object().into_iter().flatten() {
            env.push((k.clone(), expand(v.as_str().unwrap())));
        }
        let script = step["run"].as_str().unwrap();
        let out = run_script(script, checkout, &env, &files.join(format!("step-{n}.sh")));
        log.push_str(&text(&out));
        assert!(out.status.success(), "{id} step {n}:\n{script}\n{log}");
    }
    (log, temp)
}

/// Run the GitLab CI job `id` of `pipeline` in `checkout` as a runner would: the artifacts
/// of the jobs it needs restored first (from `work`/gitlab-artifacts), its script lines in one bash
/// (`-e -o pipefail`) with CI_PROJECT_DIR and `variables` (those in `files` as File-type
/// variables: their value in a file, the variable its path), TMPDIR a directory of its own;
/// its artifacts kept after. Returns the log and the TMPDIR.
fn gitlab_job(
    pipeline: &Value,
    id: &str,
    checkout: &Path,
    variables: &[(String, String)],
    files: &[&str],
    work: &Path,
) -> (String, PathBuf) {
    let job = &pipeline[id];
    let artifacts = work.join("gitlab-artifacts");
    for need in job["needs"].as_array().into_iter().flatten() {
        let kept = artifacts.join(need.as_str().unwrap());
        if kept.exists() {
            let status = Command::new("cp")
                .arg("-a")
                .arg(format!("{}/.", kept.display()))
                .arg(checkout)
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let tmp = work.join(format!("gitlab-{id}/tmp"));
    let vars = work.join(format!("gitlab-{id}/variables"));
    std::fs::create_dir_all(&tmp).unwrap();
    std::fs::create_dir_all(&vars).unwrap();
    let mut env = vec![
        ("CI_PROJECT_DIR".to_string(), checkout.display().to_string()),
        ("TMPDIR".to_string(), tmp.display().to_string()),
        ("PATH".to_string(), path_with(&work.join("bin"))),
    ];
    for (name, value) in variables {
        match files.contains(&name.as_str()) {
            true => {
                let file = vars.join(name);
                std::fs::write(&file, value).unwrap();
                env.push((name.clone(), file.display().to_string()));
            }
            false => env.push((name.clone(), value.clone())),
        }
    }
    let lines: Vec<&str> = job["script"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    let script = lines.join("\n") + "\n";
    let out = run_script(
        &script,
        checkout,
        &env,
        &work.join(format!("gitlab-{id}/script.sh")),
    );
    let log = text(&out);
    assert!(out.status.success(), "{id}:\n{script}\n{log}");
    for path in job["artifacts"]["paths"].as_array().into_iter().flatten() {
        let path = path.as_str().unwrap();
        let to = artifacts.join(id).join(path);
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(checkout.join(path), &to).unwrap();
    }
    (log, tmp)
}

fn the_ci_files_run_as_generated_logging_in_and_writing_the_user_data_from_ci_secrets() {
    use std::os::unix::fs::PermissionsExt as _;
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let registry = Registry::start(None, true);
    let host = registry.host();
    let inputs = CiInputs::new(Some(&host));
    let work = tempfile::tempdir().unwrap();
    let cargo_log = work.path().join("cargo.log");
    fake_cargo(&work.path().join("bin"), &cargo_log);
    let prefix: String = host
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let login = format!("FORGE_REGISTRY_{prefix}");
    let secrets: Vec<(String, String)> = vec![
        ("FORGE_USER_DATA_SITE_A".into(), inputs.site("site-a")),
        ("FORGE_USER_DATA_SITE_B".into(), inputs.site("site-b")),
        (format!("{login}_USERNAME"), support::USER.into()),
        (format!("{login}_PASSWORD"), support::PASSWORD.into()),
        ("FORGE_HTTPS_PROXY".into(), ENV_PROXY.into()),
        ("FORGE_HTTP_PROXY".into(), FILE_PROXY.into()),
    ];
    let registry_set = format!("IMAGE_REGISTRY={host}/edge");
    let plan = |format: &str| {
        let out = inputs.plan(&["--set", &registry_set, "--format", format]);
        assert!(out.status.success(), "{}", text(&out));
        parsed(&String::from_utf8(out.stdout).unwrap())
    };
    let (workflow, pipeline) = (plan("github-actions"), plan("gitlab-ci"));
    let checkout = |name: &str| {
        let dir = work.path().join(name);
        std::fs::create_dir(&dir).unwrap();
        checkout_copy(&dir)
    };

    // GitHub Actions: the forge job, then the base job, each on a fresh runner.
    let (log, _) = github_job(
        &workflow,
        "forge",
        &checkout("gh-forge"),
        &secrets,
        work.path(),
    );
    let installed = std::fs::read_to_string(&cargo_log).unwrap();
    assert!(
        installed.starts_with("install --locked --root ")
            && installed.ends_with(&format!(" --git {FORGE_GIT} --rev {FORGE_REV} forge\n")),
        "{installed}"
    );
    let base = checkout("gh-base");
    let (mut log, temp) = {
        let (more, temp) = github_job(&workflow, "base", &base, &secrets, work.path());
        (log + &more, temp)
    };
    assert!(log.contains("Login Succeeded"), "{log}");
    assert!(
        log.contains("docker.io is used without logging in"),
        "{log}"
    );
    let config = std::fs::read_to_string(temp.join("docker/config.json")).unwrap();
    assert!(config.contains(&host), "{config}");
    for (name, _, _) in SITES {
        let file = temp.join(format!("forge-sites/{name}.yaml"));
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", file.display());
        assert_eq!(std::fs::read_to_string(&file).unwrap(), inputs.site(name));
    }
    let dir_mode = std::fs::metadata(temp.join("forge-sites"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(dir_mode & 0o777, 0o700);
    // forge pushed the base to the cache with the credentials `docker login` stored.
    assert!(log.contains(&format!("{host}/edge/forge-cache")), "{log}");

    // GitLab CI: the same two jobs.
    let files = ["FORGE_USER_DATA_SITE_A", "FORGE_USER_DATA_SITE_B"];
    let project = checkout("gl-forge");
    let (more, _) = gitlab_job(&pipeline, "forge", &project, &secrets, &files, work.path());
    log.push_str(&more);
    let project = checkout("gl-base");
    let (more, tmp) = gitlab_job(&pipeline, "base", &project, &secrets, &files, work.path());
    log.push_str(&more);
    assert!(more.contains("Login Succeeded"), "{more}");
    assert!(more.contains(&format!("{host}/edge/forge-cache")), "{more}");
    assert!(
        !project.join(".forge").exists(),
        "forge left in the checkout"
    );
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "the job's files left behind"
    );

    for secret in inputs.secrets() {
        assert!(!log.contains(&secret), "{secret} in the jobs' logs:\n{log}");
    }

    // A missing user-data secret stops the job, named.
    let step = workflow["jobs"]["base"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "write the user-data")
        .unwrap();
    let mut env = vec![("RUNNER_TEMP".to_string(), work.path().display().to_string())];
    env.extend(secrets[1..].iter().cloned());
    let out = run_script(
        step["run"].as_str().unwrap(),
        &base,
        &env,
        &work.path().join("missing.sh"),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "the secret FORGE_USER_DATA_SITE_A (the user-data of site site-a) is not set"
        ),
        "{}",
        text(&out)
    );
}

/// A second Docker Engine on this machine: its own data root, exec root, socket and network
/// bridge (`--bridge none` would make it delete the first engine's docker0); stopped, its
/// bridge and files removed, when dropped.
struct SecondEngine {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl SecondEngine {
    fn start() -> SecondEngine {
        let dir = tempfile::tempdir().unwrap();
        let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
        let log = std::fs::File::create(dir.path().join("dockerd.log")).unwrap();
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
        for args in [
            &["link", "add", BRIDGE, "type", "bridge"][..],
            &["addr", "add", "172.30.99.1/24", "dev", BRIDGE],
            &["link", "set", BRIDGE, "up"],
        ] {
            let out = Command::new("ip").args(args).output().unwrap();
            assert!(out.status.success(), "ip {args:?}: {}", text(&out));
        }
        let child = Command::new("dockerd")
            .args(["--data-root", &path("data"), "--exec-root", &path("exec")])
            .args(["--pidfile", &path("dockerd.pid")])
            .args(["-H", &format!("unix://{}", path("docker.sock"))])
            .args(["--bridge", BRIDGE, "--iptables=false", "--ip-masq=false"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let engine = SecondEngine { child, dir };
        for _ in 0..60 {
            if engine.docker(&["info"]).status.success() {
                return engine;
            }
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
        panic!(
            "the second dockerd did not start: {}",
            std::fs::read_to_string(engine.dir.path().join("dockerd.log")).unwrap()
        );
    }

    fn url(&self) -> String {
        format!("unix://{}", self.dir.path().join("docker.sock").display())
    }

    fn docker(&self, args: &[&str]) -> Output {
        Command::new("docker")
            .args(["-H", &self.url()])
            .args(args)
            .output()
            .unwrap()
    }

    /// The tags of the engine's images.
    fn images(&self) -> Vec<String> {
        String::from_utf8(
            self.docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"])
                .stdout,
        )
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
    }
}

impl Drop for SecondEngine {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).output();
    }
}

/// The second engine's network bridge.
const BRIDGE: &str = "forge-test-br";

fn two_engines_build_a_four_version_matrix_between_them_then_push_it() {
    let _engine = ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let work = tempfile::tempdir().unwrap();
    let pki = Pki::generate();
    let registry = Registry::start(Some(&pki), true);
    let host = registry.host();
    // The second engine has none of the fixtures: both pull them from a mirror.
    let skopeo = support::Skopeo::new(Some(&pki.ca_pem), std::slice::from_ref(&host));
    let mirror = format!("{host}/palette-images");
    for image in support::FIXTURES
        .iter()
        .filter(|i| i.starts_with(support::FIXTURE_REPO) && !i.contains(":24.04"))
    {
        skopeo.push_from_engine(image, &image.replacen(support::FIXTURE_REPO, &mirror, 1));
    }
    let certs_d = PathBuf::from("/etc/docker/certs.d").join(&host);
    std::fs::create_dir_all(&certs_d).unwrap();
    std::fs::write(certs_d.join("ca.crt"), &pki.ca_pem).unwrap();
    let docker_config = work.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::write(
        docker_config.join("config.json"),
        support::auth_file(std::slice::from_ref(&host)),
    )
    .unwrap();
    let ca = work.path().join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();
    let (checkout, mut words) = matrix_checkout(work.path(), &host);
    let versions = ["1.30.11", "1.31.7", "1.32.3", "1.33.1"];
    std::fs::write(
        checkout.join("k8s_version.json"),
        serde_json::json!({ "k3s": versions }).to_string(),
    )
    .unwrap();
    let second = SecondEngine::start();
    let first = std::env::var("DOCKER_HOST").unwrap_or("unix:///var/run/docker.sock".into());
    words.splice(
        0..0,
        ["build", "--arg", ".arg", "--user-data", "user-data"].map(String::from),
    );
    words.extend([
        format!("--set=SPECTRO_PUB_REPO={mirror}"),
        format!("--set=SPECTRO_THIRD_PARTY_IMAGE={mirror}/third-party/spectro-third-party:4.8"),
        "--engine".into(),
        first,
        "--engine".into(),
        second.url(),
        "--cache-to".into(),
        "registry".into(),
        "--cache-from".into(),
        "registry".into(),
        "--push".into(),
        "--no-iso".into(),
        "--registry-ca".into(),
        ca.display().to_string(),
        "--progress".into(),
        "plain".into(),
    ]);
    let out = forge_in(&checkout, &docker_config, &words);
    let on_second = second.images();
    let listed =
        String::from_utf8(docker(&["images", "--format", "{{.Repository}}:{{.Tag}}"]).stdout)
            .unwrap();
    for image in listed
        .lines()
        .filter(|i| i.starts_with(&format!("{host}/")))
    {
        docker(&["rmi", image]);
    }
    let _ = std::fs::remove_dir_all(&certs_d);
    assert!(out.status.success(), "{}", text(&out));
    let (pushed, _) = results(&checkout);
    assert_eq!(pushed.len(), 4, "{pushed:?}");
    for (reference, digest) in &pushed {
        assert!(digest.starts_with("sha256:"), "{reference} was not pushed");
    }
    // Two provider images on each engine; the second engine's base came from the cache.
    let providers_on_second: Vec<&String> =
        on_second.iter().filter(|i| i.contains(":k3s-")).collect();
    assert_eq!(providers_on_second.len(), 2, "{on_second:?}");
    assert!(
        text(&out).contains("] base: pulled "),
        "the second engine pulls the base: {}",
        text(&out)
    );
    assert_eq!(
        text(&out).matches("] base: built ").count(),
        1,
        "{}",
        text(&out)
    );

    // An engine that does not answer stops the build, named.
    let missing = "unix:///nonexistent/forge-second.sock";
    let mut refused = words.clone();
    let at = refused.iter().position(|w| *w == second.url()).unwrap();
    refused[at] = missing.to_string();
    let out = forge_in(&checkout, &docker_config, &refused);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("cannot reach the Docker Engine at {missing}")),
        "{}",
        text(&out)
    );
}
