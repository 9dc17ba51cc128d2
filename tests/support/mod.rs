//! Real components for tests and benchmarks: Debian's `docker-registry` on 127.0.0.1 (TLS from
//! a CA generated here, htpasswd auth, or plain HTTP), OCI image layouts written here and
//! pushed with `skopeo`, and a loopback proxy that injects faults. What a test needs from the
//! machine is a [`Need`], probed once per process: a missing one makes the integration
//! harness report the test as ignored on a developer machine and fail it when `CI=true`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// What a test or benchmark needs from the machine besides forge.
#[derive(Debug, Clone, Copy)]
pub enum Need {
    /// A Docker Engine that answers `docker info`.
    Engine,
    /// The engine, holding the images `make fixtures` builds ([`FIXTURES`]).
    Fixtures,
    /// Commands on `PATH`.
    Commands(&'static [&'static str]),
}

/// Whether this is CI (`CI=true`), where a missing component is a failure.
pub fn ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// What of `needs` this machine lacks, each named with how to get it. Every component is
/// probed once per process, however many tests ask.
pub fn missing(needs: &[Need]) -> Vec<String> {
    static ENGINE: OnceLock<bool> = OnceLock::new();
    static ABSENT_FIXTURES: OnceLock<Vec<&str>> = OnceLock::new();
    static COMMANDS: Mutex<BTreeMap<&str, bool>> = Mutex::new(BTreeMap::new());
    let engine = || {
        *ENGINE.get_or_init(|| {
            Command::new("docker")
                .arg("info")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
    };
    let mut missing = Vec::new();
    for need in needs {
        match need {
            Need::Engine | Need::Fixtures if !engine() => {
                missing.push("a Docker Engine (`docker info` fails)".to_string());
            }
            Need::Engine => {}
            Need::Fixtures => {
                let absent = ABSENT_FIXTURES.get_or_init(|| {
                    FIXTURES
                        .iter()
                        .copied()
                        .filter(|i| !docker(&["image", "inspect", i]).status.success())
                        .collect()
                });
                if !absent.is_empty() {
                    missing.push(format!(
                        "the fixture images (`make fixtures` builds them): {}",
                        absent.join(", ")
                    ));
                }
            }
            Need::Commands(commands) => {
                let mut known = COMMANDS.lock().unwrap_or_else(|e| e.into_inner());
                missing.extend(
                    commands
                        .iter()
                        .filter(|c| !*known.entry(c).or_insert_with(|| on_path(c)))
                        .map(|c| format!("`{c}`")),
                );
            }
        }
    }
    missing.dedup();
    missing
}

/// Whether `command` is found the way a shell finds it.
fn on_path(command: &str) -> bool {
    Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {command}"))
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether the machine has `needs`: when it lacks some, `false` (saying what) locally and a
/// panic under CI=true.
fn available(needs: &[Need]) -> bool {
    let missing = missing(needs);
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join("; ");
    assert!(
        !ci(),
        "CI=true and required components are missing: {missing}"
    );
    eprintln!("skipping: missing {missing} (install them, or run .ci/run)");
    false
}

/// Whether the commands exist; as [`available`].
pub fn have(commands: &'static [&'static str]) -> bool {
    available(&[Need::Commands(commands)])
}

/// Where `make fixtures` puts the images in CanvOS's shapes (tests/fixtures/palette/build.sh):
/// the example's SPECTRO_PUB_REPO.
pub const FIXTURE_REPO: &str = "forge-fixtures.local/palette-images";

/// The images `make fixtures` builds for the CanvOS-shaped example.
/// The bootable fixture with Debian's signed shim and GRUB.
pub const SECUREBOOT_FIXTURE: &str = "forge-fixtures/kairos-secureboot:bookworm";
pub const FIXTURES: &[&str] = &[
    "forge-fixtures/debian:bookworm",
    "forge-fixtures.local/palette-images/edge/kairos-ubuntu:22.04-core-amd64-generic-v0.17.1",
    "forge-fixtures.local/palette-images/edge/kairos-ubuntu:24.04-core-amd64-generic-v0.17.1",
    SECUREBOOT_FIXTURE,
    "forge-fixtures.local/palette-images/edge/kairos-io/provider-k3s:v4.10.3",
    "forge-fixtures.local/palette-images/edge/stylus-framework-linux-amd64:v4.9.38",
    "forge-fixtures.local/palette-images/edge/canvos/alpine:3.20",
    "forge-fixtures.local/palette-images/third-party/spectro-third-party:4.8",
];

/// `document`, JSON forge printed, has the shape forge publishes for it: the JSON Schema
/// `forge schema output NAME` prints, NAME from the document's `schema` field
/// (`forge.NAME/v1`), checked by check-jsonschema (which the test needs).
pub fn assert_published_shape(document: &[u8]) {
    let doc: serde_json::Value = serde_json::from_slice(document)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(document)));
    let id = doc["schema"]
        .as_str()
        .unwrap_or_else(|| panic!("no schema field: {doc}"));
    let name = id
        .strip_prefix("forge.")
        .and_then(|n| n.strip_suffix("/v1"))
        .unwrap_or_else(|| panic!("schema `{id}` is not forge.NAME/v1"));
    let schema = forge_command()
        .args(["schema", "output", name])
        .output()
        .unwrap();
    assert!(schema.status.success(), "{}", text(&schema));
    let dir = tempfile::tempdir().unwrap();
    let (schema_file, doc_file) = (dir.path().join("schema.json"), dir.path().join("doc.json"));
    std::fs::write(&schema_file, &schema.stdout).unwrap();
    std::fs::write(&doc_file, document).unwrap();
    let checked = Command::new("check-jsonschema")
        .arg("--schemafile")
        .arg(&schema_file)
        .arg(&doc_file)
        .output()
        .unwrap();
    assert!(
        checked.status.success(),
        "{name}: {}\n{doc:#}",
        text(&checked)
    );
}

/// The shipped example, a CanvOS-shaped checkout.
pub fn example() -> PathBuf {
    root().join("examples/canvos")
}

/// A copy of the example checkout in `dir` (for tests that change it); returns its path.
pub fn checkout_copy(dir: &Path) -> PathBuf {
    let copy = dir.join("checkout");
    let status = Command::new("cp")
        .arg("-a")
        .arg(example())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

/// The mastering cache the tests share (`XDG_CACHE_HOME` of every forge they run), so that
/// only the first ISO of an installer image pays for its squashfs; tests of the cache itself
/// give `--cache-dir`.
pub fn cache_home() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("cache-home")
}

/// `forge` with the tests' cache.
pub fn forge_command() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_forge"));
    cmd.env("XDG_CACHE_HOME", cache_home());
    cmd
}

/// `forge build --arg .arg --user-data user-data` in `checkout`, with `args` added
/// (`--progress plain` unless they say otherwise).
pub fn forge_build_in(checkout: &Path, args: &[&str]) -> Command {
    let mut cmd = forge_command();
    cmd.current_dir(checkout)
        .args(["build", "--arg", ".arg", "--user-data", "user-data"])
        .args(args);
    if !args.contains(&"--progress") {
        cmd.args(["--progress", "plain"]);
    }
    cmd
}

pub fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The engine runs and the fixtures exist (built by `make fixtures`); as [`available`].
pub fn ready() -> bool {
    available(&[Need::Fixtures])
}

pub fn docker(args: &[&str]) -> Output {
    Command::new("docker").args(args).output().unwrap()
}

/// How many containers the engine holds.
pub fn containers() -> usize {
    String::from_utf8(docker(&["ps", "-aq"]).stdout)
        .unwrap()
        .lines()
        .count()
}

/// stdout and stderr of a finished command.
pub fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Start `cmd` with its stderr piped and read it until a line satisfies `until`; returns the
/// child and the rest of its stderr.
pub fn spawn_until(
    cmd: &mut Command,
    until: impl Fn(&str) -> bool,
) -> (
    Child,
    std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
) {
    use std::io::BufRead as _;
    let mut child = cmd
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
    for line in stderr.by_ref() {
        if until(&line.unwrap()) {
            break;
        }
    }
    (child, stderr)
}

/// Send SIGINT to `child`, wait for it; returns its exit status and the rest of `stderr`.
pub fn interrupt(
    child: &mut Child,
    stderr: impl Iterator<Item = std::io::Result<String>> + Send + 'static,
) -> (std::process::ExitStatus, String) {
    stop(child, "INT", stderr)
}

/// Send `signal` (`INT`, `TERM`, `HUP`, `KILL`) to `child`, wait for it; returns its exit
/// status and the rest of `stderr`.
pub fn stop(
    child: &mut Child,
    signal: &str,
    stderr: impl Iterator<Item = std::io::Result<String>> + Send + 'static,
) -> (std::process::ExitStatus, String) {
    let drain =
        std::thread::spawn(move || stderr.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
    send(child, signal);
    let status = child.wait().unwrap();
    (status, drain.join().unwrap())
}

/// Send `signal` to `child` without waiting.
pub fn send(child: &Child, signal: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{signal} failed");
}

/// `forge build` of the example checkout with `args` added.
pub fn forge_build(args: &[&str]) -> Command {
    forge_build_in(&example(), args)
}

/// Whether a Docker Engine answers; as [`available`].
pub fn have_docker() -> bool {
    available(&[Need::Engine])
}

/// Run `cmd` with `input` on its standard input; its output.
pub fn output_with_stdin(cmd: &mut Command, input: &str) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// A CA, a server certificate for 127.0.0.1 / localhost, and a client certificate.
pub struct Pki {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub client_cert_pem: String,
    pub client_key_pem: String,
}

/// A self-signed CA named `name`.
fn test_ca(name: &str) -> rcgen::CertifiedIssuer<'static, rcgen::KeyPair> {
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
}

impl Pki {
    pub fn generate() -> Pki {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let ca = test_ca("forge test CA");
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
        client
            .distinguished_name
            .push(DnType::CommonName, "forge test client");
        let client_cert = client.signed_by(&client_key, &ca).unwrap();
        Pki {
            ca_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        }
    }
}

/// How a test registry authenticates.
pub enum Auth<'a> {
    Anonymous,
    /// htpasswd with [`USER`] / [`PASSWORD`].
    Htpasswd,
    /// Bearer tokens from this token service.
    Token(&'a TokenServer),
}

/// A running `docker-registry`.
pub struct Registry {
    pub port: u16,
    pub tls: bool,
    pub dir: tempfile::TempDir,
    child: Child,
}

pub const USER: &str = "forge-tester";
pub const PASSWORD: &str = "Reg1stry!Secret";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn wait_for_port(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "port {port} did not open");
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Registry {
    /// Start a registry: TLS with `pki` when given, htpasswd auth when `auth`.
    pub fn start(pki: Option<&Pki>, auth: bool) -> Registry {
        Registry::start_with(
            pki,
            if auth {
                Auth::Htpasswd
            } else {
                Auth::Anonymous
            },
        )
    }

    /// Start a registry with any kind of authentication.
    pub fn start_with(pki: Option<&Pki>, auth: Auth<'_>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some(pki) = pki {
            std::fs::write(dir.path().join("cert.pem"), &pki.cert_pem).unwrap();
            std::fs::write(dir.path().join("key.pem"), &pki.key_pem).unwrap();
            config.push_str(&format!(
                "  tls:\n    certificate: {0}/cert.pem\n    key: {0}/key.pem\n",
                dir.path().display()
            ));
        }
        if let Auth::Token(server) = &auth {
            std::fs::write(dir.path().join("token-ca.pem"), &server.ca_pem).unwrap();
            config.push_str(&format!(
                "auth:\n  token:\n    realm: http://127.0.0.1:{}/token\n    service: {TOKEN_SERVICE}\n    issuer: {TOKEN_ISSUER}\n    rootcertbundle: {}/token-ca.pem\n",
                server.port,
                dir.path().display()
            ));
        }
        if let Auth::Htpasswd = auth {
            let mut htpasswd = Command::new("htpasswd")
                .args(["-Bin", USER])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap();
            htpasswd
                .stdin
                .take()
                .unwrap()
                .write_all(PASSWORD.as_bytes())
                .unwrap();
            let out = htpasswd.wait_with_output().unwrap();
            std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: forge-test\n    path: {}/htpasswd\n",
                dir.path().display()
            ));
        }
        std::fs::write(dir.path().join("config.yml"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(dir.path().join("config.yml"))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("docker-registry starts");
        wait_for_port(port);
        Registry {
            port,
            tls: pki.is_some(),
            dir,
            child,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Docker config / containers auth file logging [`USER`] in to each of `hosts`.
pub fn auth_file(hosts: &[String]) -> String {
    use base64::Engine as _;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    let auths: serde_json::Map<String, serde_json::Value> = hosts
        .iter()
        .map(|h| (h.clone(), serde_json::json!({ "auth": auth })))
        .collect();
    serde_json::json!({ "auths": auths }).to_string()
}

/// skopeo with a certificate directory and an auth file, so no secret is on its command line.
pub struct Skopeo {
    dir: tempfile::TempDir,
}

impl Skopeo {
    pub fn new(ca_pem: Option<&str>, hosts: &[String]) -> Skopeo {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("certs")).unwrap();
        if let Some(ca) = ca_pem {
            std::fs::write(dir.path().join("certs/ca.crt"), ca).unwrap();
        }
        std::fs::write(dir.path().join("auth.json"), auth_file(hosts)).unwrap();
        Skopeo { dir }
    }

    fn tls_args(&self, flag: &str, tls: bool) -> Vec<String> {
        if tls {
            vec![
                format!("--{flag}-cert-dir"),
                self.dir.path().join("certs").display().to_string(),
            ]
        } else {
            vec![format!("--{flag}-tls-verify=false")]
        }
    }

    /// Push an OCI layout (`--all` images of an index) to `docker://dest`.
    pub fn push(&self, layout: &Path, tag: &str, dest: &str, tls: bool) {
        let mut cmd = Command::new("skopeo");
        cmd.args(["copy", "--all", "--quiet"])
            .args(self.tls_args("dest", tls))
            .arg("--dest-authfile")
            .arg(self.dir.path().join("auth.json"));
        cmd.arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{dest}"));
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Copy the engine's image `src` to `docker://dest` over verified TLS.
    pub fn push_from_engine(&self, src: &str, dest: &str) {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet"])
            .args(self.tls_args("dest", true))
            .arg("--dest-authfile")
            .arg(self.dir.path().join("auth.json"))
            .arg(format!("docker-daemon:{src}"))
            .arg(format!("docker://{dest}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy from the engine failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Copy `docker://src` to `docker://dest`, both over verified TLS.
    pub fn copy(&self, src: &str, dest: &str) {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet"])
            .args(self.tls_args("src", true))
            .args(self.tls_args("dest", true))
            .arg("--authfile")
            .arg(self.dir.path().join("auth.json"))
            .arg(format!("docker://{src}"))
            .arg(format!("docker://{dest}"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Copy `docker://image` over verified TLS into the directory `dir` (skopeo's `dir:`
    /// layout: `manifest.json` and each blob named by its hex digest).
    pub fn pull_to_dir(&self, image: &str, dir: &Path) {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet"])
            .args(self.tls_args("src", true))
            .arg("--src-authfile")
            .arg(self.dir.path().join("auth.json"))
            .arg(format!("docker://{image}"))
            .arg(format!("dir:{}", dir.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy to a directory failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The raw manifest (or index) of `docker://image`, if it exists.
    pub fn raw(&self, image: &str, tls: bool) -> Option<Vec<u8>> {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .args(
                self.tls_args("src", tls)
                    .iter()
                    .map(|a| a.replace("--src-", "--")),
            )
            .arg("--authfile")
            .arg(self.dir.path().join("auth.json"))
            .arg(format!("docker://{image}"))
            .output()
            .unwrap();
        out.status.success().then_some(out.stdout)
    }

    /// The manifest digest of `docker://image` (the index digest for a multi-platform image).
    pub fn digest(&self, image: &str, tls: bool) -> Option<String> {
        self.raw(image, tls).map(|raw| sha(&raw))
    }

    /// A field of the manifest of `docker://image`, by JSON pointer.
    pub fn field(&self, image: &str, tls: bool, pointer: &str) -> String {
        let raw = self
            .raw(image, tls)
            .unwrap_or_else(|| panic!("{image} does not exist"));
        let manifest: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        manifest
            .pointer(pointer)
            .and_then(|v| v.as_str())
            .unwrap_or_else(|| panic!("{image} has no {pointer}"))
            .to_string()
    }
}

/// An OCI image layout under construction: blobs, image manifests, an index.
pub struct Layout {
    pub dir: PathBuf,
    manifests: Vec<serde_json::Value>,
}

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

impl Layout {
    pub fn new(dir: &Path) -> Layout {
        std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
        std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
        Layout {
            dir: dir.to_path_buf(),
            manifests: Vec::new(),
        }
    }

    fn blob(&self, bytes: &[u8]) -> serde_json::Value {
        let digest = sha(bytes);
        std::fs::write(self.dir.join("blobs/sha256").join(&digest[7..]), bytes).unwrap();
        serde_json::json!({ "digest": digest, "size": bytes.len() })
    }

    /// A layer blob of `size` pseudo-random bytes from `seed` (same seed, same blob).
    pub fn layer(&self, seed: u64, size: usize) -> serde_json::Value {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let data: Vec<u8> = (0..size)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as u8
            })
            .collect();
        let mut d = self.blob(&data);
        d["mediaType"] = "application/vnd.oci.image.layer.v1.tar".into();
        d
    }

    /// An image manifest with these layers, added under `tag` (and for `arch`).
    pub fn image(&mut self, tag: &str, arch: &str, layers: Vec<serde_json::Value>) -> String {
        let config = serde_json::json!({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l["digest"].clone()).collect::<Vec<_>>()}, "config": {}});
        let mut config = self.blob(config.to_string().as_bytes());
        config["mediaType"] = "application/vnd.oci.image.config.v1+json".into();
        let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": config, "layers": layers});
        let mut d = self.blob(manifest.to_string().as_bytes());
        d["mediaType"] = "application/vnd.oci.image.manifest.v1+json".into();
        d["platform"] = serde_json::json!({"os": "linux", "architecture": arch});
        d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        self.manifests.push(d.clone());
        d["digest"].as_str().unwrap().to_string()
    }

    /// A multi-platform index of the manifests tagged `members`, itself tagged `tag`.
    pub fn index(&mut self, tag: &str, members: &[&str]) -> String {
        let children: Vec<serde_json::Value> = self
            .manifests
            .iter()
            .filter(|m| {
                members.contains(
                    &m["annotations"]["org.opencontainers.image.ref.name"]
                        .as_str()
                        .unwrap(),
                )
            })
            .map(|m| {
                let mut m = m.clone();
                m.as_object_mut().unwrap().remove("annotations");
                m
            })
            .collect();
        let index = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": children});
        let mut d = self.blob(index.to_string().as_bytes());
        d["mediaType"] = "application/vnd.oci.image.index.v1+json".into();
        d["annotations"] = serde_json::json!({"org.opencontainers.image.ref.name": tag});
        self.manifests.push(d.clone());
        d["digest"].as_str().unwrap().to_string()
    }

    /// Write `index.json` listing everything tagged so far.
    pub fn finish(&self) {
        let index = serde_json::json!({"schemaVersion": 2, "manifests": self.manifests});
        std::fs::write(self.dir.join("index.json"), index.to_string()).unwrap();
    }
}

/// Counters of a [`FaultProxy`].
#[derive(Default)]
pub struct Faults {
    pub requests: AtomicU64,
    pub resets: AtomicU64,
    pub unavailable: AtomicU64,
    pub cut: AtomicU64,
}

impl Faults {
    pub fn injected(&self) -> u64 {
        [&self.resets, &self.unavailable, &self.cut]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

/// A loopback HTTP proxy in front of a plain-HTTP registry. Each request is, with equal odds
/// within `share`: reset before an answer, answered 503, or cut in the middle of its body;
/// the others are forwarded. Every exchange ends its connection, so each request gets a fresh
/// roll. A fixed seed keeps runs comparable.
pub struct FaultProxy {
    pub port: u16,
    pub faults: Arc<Faults>,
    stop: Arc<AtomicBool>,
}

impl FaultProxy {
    pub fn start(backend: u16, share: f64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let faults = Arc::new(Faults::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (f, s) = (faults.clone(), stop.clone());
        listener.set_nonblocking(true).unwrap();
        std::thread::spawn(move || {
            let mut seed: u64 = 0x5eed;
            let mut next = move || {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (seed >> 11) as f64 / (1u64 << 53) as f64
            };
            while !s.load(Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let (roll, cut) = (next(), next());
                let f = f.clone();
                std::thread::spawn(move || {
                    let _ = exchange(client, backend, roll / share.max(1e-9), cut, &f);
                });
            }
        });
        FaultProxy { port, faults, stop }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A registry that accepts TCP connections and never answers: each connection is held open,
/// silent, until the registry is dropped.
pub struct SilentRegistry {
    pub port: u16,
    /// Connections accepted so far.
    pub accepted: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl SilentRegistry {
    pub fn start() -> SilentRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (count, s) = (accepted.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        count.fetch_add(1, Ordering::Relaxed);
                        held.push(stream);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        SilentRegistry {
            port,
            accepted,
            stop,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SilentRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Read an HTTP message head; returns it and any body bytes read past it.
fn read_head(stream: &mut TcpStream) -> std::io::Result<(String, Vec<u8>)> {
    let mut data = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = data.split_off(end + 4);
            return Ok((String::from_utf8_lossy(&data).into_owned(), rest));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 || (data.is_empty() && buf[0] == 0x16) {
            // End of stream, or a TLS handshake this plain-HTTP server cannot answer.
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        data.extend_from_slice(&buf[..n]);
    }
}

/// The head with `Connection: close` in place of any Connection header.
fn closing(head: &str) -> String {
    let mut lines: Vec<&str> = head
        .trim_end()
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    lines.push("Connection: close");
    format!("{}\r\n\r\n", lines.join("\r\n"))
}

/// One request: `fault` below 1/3, 2/3, 1 picks reset, 503 or a cut body; above 1 forwards.
fn exchange(
    mut client: TcpStream,
    backend: u16,
    fault: f64,
    cut: f64,
    faults: &Faults,
) -> std::io::Result<()> {
    let (head, mut body) = read_head(&mut client)?;
    faults.requests.fetch_add(1, Ordering::Relaxed);
    if fault < 1.0 / 3.0 {
        faults.resets.fetch_add(1, Ordering::Relaxed);
        return client.shutdown(Shutdown::Both);
    }
    if fault < 2.0 / 3.0 {
        faults.unavailable.fetch_add(1, Ordering::Relaxed);
        client.write_all(
            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
        )?;
        return client.shutdown(Shutdown::Both);
    }
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    let limit = if fault < 1.0 {
        (length as f64 * cut) as usize
    } else {
        usize::MAX
    };
    let mut server = TcpStream::connect(("127.0.0.1", backend))?;
    server.write_all(closing(&head).as_bytes())?;
    let mut sent = 0;
    let mut buf = vec![0u8; 64 * 1024];
    while sent < length {
        if body.is_empty() {
            let n = client.read(&mut buf)?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&buf[..n]);
        }
        let take = body.len().min(length - sent);
        if sent + take > limit {
            faults.cut.fetch_add(1, Ordering::Relaxed);
            let _ = server.shutdown(Shutdown::Both);
            return client.shutdown(Shutdown::Both);
        }
        server.write_all(&body[..take])?;
        body.drain(..take);
        sent += take;
    }
    if fault < 1.0 {
        // A request without a body is cut by dropping the answer.
        faults.cut.fetch_add(1, Ordering::Relaxed);
        let _ = server.shutdown(Shutdown::Both);
        return client.shutdown(Shutdown::Both);
    }
    let (response, rest) = read_head(&mut server)?;
    client.write_all(closing(&response).as_bytes())?;
    client.write_all(&rest)?;
    std::io::copy(&mut server, &mut client)?;
    client.shutdown(Shutdown::Both)
}

pub const TOKEN_SERVICE: &str = "forge-test-registry";
pub const TOKEN_ISSUER: &str = "forge-test-issuer";

/// A bearer-token service as registries use: `GET /token?service=..&scope=..` with basic
/// credentials ([`USER`] / [`PASSWORD`]) answers an ES256 JWT granting the scopes, signed by a
/// key whose certificate (`x5c`) chains to `ca_pem`.
pub struct TokenServer {
    pub port: u16,
    pub ca_pem: String,
    pub issued: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl TokenServer {
    pub fn start() -> TokenServer {
        use rcgen::{CertificateParams, DnType, KeyPair};
        let ca = test_ca("forge test token CA");
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "forge test token signer");
        let cert = params.signed_by(&key, &ca).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (issued, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let (i, s) = (issued.clone(), stop.clone());
        let x5c = {
            use base64::Engine as _;
            base64::engine::general_purpose::STANDARD.encode(cert.der())
        };
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((mut client, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let _ = client.set_nonblocking(false);
                let Ok((head, _)) = read_head(&mut client) else {
                    continue;
                };
                let response = match token_for(&head, &key, &x5c) {
                    Some(jwt) => {
                        i.fetch_add(1, Ordering::Relaxed);
                        let body = serde_json::json!({ "token": jwt, "expires_in": 300 }).to_string();
                        format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                    }
                    None => "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
                };
                let _ = client.write_all(response.as_bytes());
                let _ = client.shutdown(Shutdown::Both);
            }
        });
        TokenServer {
            port,
            ca_pem: ca.pem(),
            issued,
            stop,
        }
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The JWT for a token request, or `None` when its basic credentials are wrong.
fn token_for(head: &str, key: &rcgen::KeyPair, x5c: &str) -> Option<String> {
    use base64::Engine as _;
    use rcgen::SigningKey as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let url = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let expected = format!("basic {}", b64.encode(format!("{USER}:{PASSWORD}")));
    let authorized = head.lines().any(|l| {
        l.to_ascii_lowercase().starts_with("authorization:")
            && l[14..].trim().eq_ignore_ascii_case(&expected)
    });
    if !authorized {
        return None;
    }
    let target = head.split_whitespace().nth(1)?;
    let query = target.split_once('?').map_or("", |(_, q)| q);
    let access: Vec<serde_json::Value> = query
        .split('&')
        .filter_map(|pair| pair.strip_prefix("scope="))
        .map(|scope| scope.replace("%3A", ":").replace("%2C", ",").replace("%2F", "/"))
        .filter_map(|scope| {
            let mut parts = scope.splitn(3, ':');
            let (kind, name, actions) = (parts.next()?, parts.next()?, parts.next()?);
            Some(serde_json::json!({"type": kind, "name": name, "actions": actions.split(',').collect::<Vec<_>>()}))
        })
        .collect();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let header = serde_json::json!({"typ": "JWT", "alg": "ES256", "x5c": [x5c]});
    let claims = serde_json::json!({
        "iss": TOKEN_ISSUER, "sub": USER, "aud": TOKEN_SERVICE,
        "exp": now + 300, "nbf": now - 10, "iat": now, "jti": format!("{now}-{}", access.len()),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        url.encode(header.to_string()),
        url.encode(claims.to_string())
    );
    let der = key.sign(signing_input.as_bytes()).ok()?;
    Some(format!(
        "{signing_input}.{}",
        url.encode(ecdsa_der_to_raw(&der))
    ))
}

/// An ASN.1 `SEQUENCE { r INTEGER, s INTEGER }` ECDSA P-256 signature as JWS wants it: r || s.
fn ecdsa_der_to_raw(der: &[u8]) -> Vec<u8> {
    let mut raw = Vec::with_capacity(64);
    let mut i = 2;
    for _ in 0..2 {
        let len = der[i + 1] as usize;
        let int = &der[i + 2..i + 2 + len];
        let int = &int[int.len().saturating_sub(32)..];
        raw.extend(std::iter::repeat_n(0u8, 32 - int.len()));
        raw.extend_from_slice(int);
        i += 2 + len;
    }
    raw
}

/// How a child process ended: its status and exit code (`None` when killed by a signal), its
/// output (invalid UTF-8 replaced), its wall time, its CPU time (user and system) and its
/// peak resident memory.
pub struct Measured {
    pub status: std::process::ExitStatus,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
    pub cpu: Duration,
    pub peak_rss_bytes: u64,
}

/// The variable that makes the integration-test binary the launcher of [`measured`]: the file
/// its report goes to ([`launch`]).
pub const MEASURE: &str = "FORGE_TEST_MEASURE";
/// The time the launcher gives the command before killing it, in milliseconds.
const MEASURE_LIMIT: &str = "FORGE_TEST_MEASURE_LIMIT_MS";

/// Run `cmd` to its end, killed after `limit`, measuring its wall and CPU time and its peak RSS (the
/// `ru_maxrss` that `wait4` reports for exactly this child). A child's `ru_maxrss` starts at
/// the peak RSS of the process that spawns it, and the test process holds what every earlier
/// test left: so the integration-test binary, started afresh as a small launcher ([`MEASURE`]),
/// spawns `cmd` and reports.
pub fn measured(cmd: &mut Command, limit: Duration) -> Measured {
    let out = tempfile::tempdir().unwrap();
    let (stdout, stderr, report) = (
        out.path().join("stdout"),
        out.path().join("stderr"),
        out.path().join("report"),
    );
    let mut launcher = Command::new(std::env::current_exe().unwrap());
    launcher.arg(cmd.get_program()).args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => launcher.env(key, value),
            None => launcher.env_remove(key),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        launcher.current_dir(dir);
    }
    let launched = launcher
        .env(MEASURE, &report)
        .env(MEASURE_LIMIT, limit.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout).unwrap())
        .stderr(std::fs::File::create(&stderr).unwrap())
        .status()
        .unwrap();
    let read = |path: PathBuf| String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
    let stderr = read(stderr);
    assert!(launched.success(), "the launcher failed: {stderr}");
    let report = std::fs::read_to_string(report).unwrap();
    let [status, micros, cpu_micros, max_rss_kib] = report
        .split_whitespace()
        .map(|n| n.parse::<i64>().unwrap())
        .collect::<Vec<_>>()[..]
    else {
        panic!("launcher report `{report}`")
    };
    let status = std::process::ExitStatus::from_raw(i32::try_from(status).unwrap());
    Measured {
        status,
        code: status.code(),
        stdout: read(stdout),
        stderr,
        elapsed: Duration::from_micros(u64::try_from(micros).unwrap()),
        cpu: Duration::from_micros(u64::try_from(cpu_micros).unwrap()),
        // Linux reports KiB.
        peak_rss_bytes: u64::try_from(max_rss_kib).unwrap_or(0) * 1024,
    }
}

/// The launcher's side of [`measured`], when [`MEASURE`] names its report: run the command
/// its arguments give (standard streams inherited) and write `<wait status> <microseconds>
/// <CPU microseconds> <peak RSS KiB>` to the report. The integration-test binary calls it before anything else.
pub fn launch(report: &Path) {
    let limit = Duration::from_millis(std::env::var(MEASURE_LIMIT).unwrap().parse().unwrap());
    let mut argv = std::env::args_os().skip(1);
    let started = Instant::now();
    // Reaped below by wait4, which std's wait does not offer.
    let pid = Command::new(argv.next().unwrap())
        .args(argv)
        .env_remove(MEASURE)
        .env_remove(MEASURE_LIMIT)
        .spawn()
        .unwrap()
        .id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain old data, filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: pid is this process's unreaped child; status and usage outlive the call.
        let reaped = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        assert!(reaped >= 0, "wait4: {}", std::io::Error::last_os_error());
        if reaped == pid {
            break;
        }
        if started.elapsed() > limit {
            // SAFETY: the child has not been reaped, so the pid is still its own.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = started.elapsed().as_micros();
    let micros = |t: libc::timeval| t.tv_sec * 1_000_000 + t.tv_usec;
    let cpu = micros(usage.ru_utime) + micros(usage.ru_stime);
    std::fs::write(
        report,
        format!("{status} {elapsed} {cpu} {}", usage.ru_maxrss),
    )
    .unwrap();
}

/// A request as a [`ScriptedRegistry`] received it.
#[derive(Debug, Clone)]
pub struct Received {
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Header names in lowercase, values as sent.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or_default()
    }

    /// The value of query parameter `key`, percent-decoded.
    pub fn query(&self, key: &str) -> Option<String> {
        let query = self.target.split_once('?')?.1;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| v.replace("%3A", ":").replace("%3a", ":"))
        })
    }
}

/// What a [`ScriptedRegistry`] answers: a status, headers and a body, the body sent
/// `trickle` at a time when given (one byte, then a pause).
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
    pub trickle: Option<Duration>,
    /// Whether the head says the body's length (else the end of the connection ends it).
    pub sized: bool,
}

/// An answer's body: bytes, or `n` bytes of `x` generated as they are sent (a body larger
/// than memory should hold).
pub enum Body {
    Bytes(Vec<u8>),
    Generated(u64),
}

impl Answer {
    pub fn new(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Body::Bytes(Vec::new()),
            trickle: None,
            sized: true,
        }
    }

    /// No `Content-Length`: the client cannot tell the body's size before reading it.
    pub fn without_length(mut self) -> Answer {
        self.sized = false;
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Answer {
        self.body = Body::Bytes(body.into());
        self
    }

    pub fn generated(mut self, size: u64) -> Answer {
        self.body = Body::Generated(size);
        self
    }

    pub fn trickle(mut self, pause: Duration) -> Answer {
        self.trickle = Some(pause);
        self
    }
}

/// A registry of the test's own on 127.0.0.1, plain HTTP (user-data `insecure: true`): each
/// request is recorded and answered by the test's function, so that it can misbehave in
/// exactly one way. One request per connection.
pub struct ScriptedRegistry {
    pub port: u16,
    received: Arc<std::sync::Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl ScriptedRegistry {
    pub fn start(answer: impl Fn(&Received) -> Answer + Send + Sync + 'static) -> ScriptedRegistry {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let received = Arc::new(std::sync::Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (log, s, answer) = (received.clone(), stop.clone(), Arc::new(answer));
        std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (log, answer, s) = (log.clone(), answer.clone(), s.clone());
                std::thread::spawn(move || {
                    let _ = serve_one(stream, &log, &*answer, &s);
                });
            }
        });
        ScriptedRegistry {
            port,
            received,
            stop,
        }
    }

    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Every request received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for ScriptedRegistry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve_one(
    mut stream: TcpStream,
    log: &std::sync::Mutex<Vec<Received>>,
    answer: &(dyn Fn(&Received) -> Answer + Send + Sync),
    stop: &AtomicBool,
) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let (head, mut body) = read_head(&mut stream)?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or_default(),
    );
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while body.len() < length {
        let mut buf = vec![0; (length - body.len()).min(1 << 20)];
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    let request = Received {
        method: method.to_string(),
        target: target.to_string(),
        headers,
        body,
    };
    let reply = answer(&request);
    log.lock().unwrap().push(request);
    let length = match &reply.body {
        Body::Bytes(bytes) => bytes.len() as u64,
        Body::Generated(n) => *n,
    };
    let mut head = format!("HTTP/1.1 {} Scripted\r\n", reply.status);
    for (name, value) in &reply.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let stated = reply
        .headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length"));
    if reply.sized && !stated {
        head.push_str(&format!("Content-Length: {length}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    stream.write_all(head.as_bytes())?;
    if method == "HEAD" {
        return Ok(());
    }
    let block = vec![b'x'; 64 << 10];
    let mut sent = 0u64;
    while sent < length && !stop.load(Ordering::Relaxed) {
        let n = match reply.trickle {
            Some(_) => 1,
            None => (length - sent).min(block.len() as u64) as usize,
        };
        match &reply.body {
            Body::Bytes(bytes) => stream.write_all(&bytes[sent as usize..sent as usize + n])?,
            Body::Generated(_) => stream.write_all(&block[..n])?,
        }
        sent += n as u64;
        if let Some(pause) = reply.trickle {
            std::thread::sleep(pause);
        }
    }
    stream.shutdown(Shutdown::Write)
}

/// `pem` indented by `spaces`, for a YAML block scalar.
pub fn indent_pem(pem: &str, spaces: usize) -> String {
    pem.trim()
        .lines()
        .map(|l| format!("{}{l}\n", " ".repeat(spaces)))
        .collect()
}

/// User-data mapping `from` to `to`, with `to`'s registry declared.
pub fn mapping(target: &str, ca: Option<&str>, insecure: bool, rules: &[(&str, &str)]) -> String {
    let mut text = format!("#cloud-config\nstylus:\n  externalRegistries:\n    registries:\n      - domain: {target}\n        username: {USER}\n        password: \"{PASSWORD}\"\n");
    if let Some(ca) = ca {
        text.push_str("        certificates:\n          - |\n");
        text.push_str(&indent_pem(ca, 12));
    }
    if insecure {
        text.push_str("        insecure: true\n");
    }
    text.push_str("    registryMappingRules:\n");
    for (from, to) in rules {
        text.push_str(&format!("      \"{from}\": \"{to}\"\n"));
    }
    text
}
