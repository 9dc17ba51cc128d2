//! Host checks: whether this machine has what a forge command line needs — the Docker Engine
//! (reachable, its API, architecture, free space in its data root, the classic builder), the
//! registries the settings name, the ISO tools for `--iso-tools host`, QEMU with its firmware,
//! and KVM — each saying what it found and how to fix what lacks. `forge doctor` runs them
//! all; `forge build` runs the ones its command line needs before anything else and stops on
//! a failing one with the same words.

use std::time::Duration;

use serde::Serialize;

use crate::engine::EngineError;
use crate::iso::arch::Arch;
use crate::iso::{self, verify};
use crate::registry::Pool;
use crate::units::human;

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Missing or wrong, but the command line does not need it (other commands may).
    Warning,
    /// The command line cannot run.
    Error,
}

/// One check: what was looked at, what was found, and the fix when it is not ok.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub status: Status,
    pub found: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn ok(name: &str, found: impl Into<String>) -> Check {
        Check {
            name: name.to_string(),
            status: Status::Ok,
            found: found.into(),
            fix: None,
        }
    }

    /// A problem: an error when the command line `needs` what is missing, else a warning.
    pub fn problem(name: &str, needs: bool, found: impl Into<String>, fix: &str) -> Check {
        Check {
            name: name.to_string(),
            status: if needs {
                Status::Error
            } else {
                Status::Warning
            },
            found: found.into(),
            fix: Some(fix.to_string()),
        }
    }
}

/// Below this much free space in the engine's data root, a warning (`forge build` then
/// measures what its plan needs).
const LOW_DISK: u64 = 10 << 30;
/// How long the engine may take to answer.
const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

/// The engine at `address`: reachable, its version and API, its architecture against `arch`
/// (the ARCH setting), free space in its data root (a local engine), the classic builder.
pub async fn engine(address: &str, arch: &str, env: &crate::config::Environment) -> Vec<Check> {
    const NAME: &str = "engine";
    let unreachable = |detail: String| {
        vec![Check::problem(
            NAME,
            true,
            format!("cannot reach the Docker Engine at {address} ({detail})"),
            "start it (`dockerd`, or `systemctl start docker`), or point DOCKER_HOST or --engine at a running engine",
        )]
    };
    let asked = async {
        let docker = crate::engine::connect_to(address, env).await?;
        match tokio::join!(docker.version(), docker.info()) {
            (Ok(version), Ok(info)) => Ok((docker, version, info)),
            (Err(e), _) | (_, Err(e)) => Err(EngineError::Api(e.to_string())),
        }
    };
    let (docker, version, info) = match tokio::time::timeout(ENGINE_TIMEOUT, asked).await {
        Ok(Ok(answers)) => answers,
        Ok(Err(EngineError::Unreachable { detail, .. })) => return unreachable(detail),
        Ok(Err(e)) => return unreachable(e.to_string()),
        Err(_) => return unreachable(format!("no answer in {} s", ENGINE_TIMEOUT.as_secs())),
    };
    let api = docker.client_version();
    let engine_arch = info.architecture.clone().unwrap_or_default();
    let native = version.arch.as_deref().unwrap_or_default();
    let os = version.os.clone().unwrap_or_default();
    let mismatch = crate::build::arch_mismatch(&engine_arch, native, arch);
    let mut checks = vec![match mismatch {
        None => Check::ok(
            NAME,
            format!(
                "Docker Engine {} at {address}: API {} (forge speaks {}.{}), {os}/{engine_arch}",
                version.version.as_deref().unwrap_or("?"),
                version.api_version.as_deref().unwrap_or("?"),
                api.major_version,
                api.minor_version,
            ),
        ),
        Some(problem) => Check::problem(
            NAME,
            true,
            format!("the engine at {address} runs on {engine_arch}"),
            &problem,
        ),
    }];
    checks.push(match os.as_str() {
        "linux" => Check::ok(
            "classic builder",
            format!(
                "{address} runs Linux containers: forge builds them with POST /build, no BuildKit"
            ),
        ),
        _ => Check::problem(
            "classic builder",
            true,
            format!("the engine runs {os} containers"),
            "forge builds Linux images: switch the engine to Linux containers",
        ),
    });
    let root = info.docker_root_dir.unwrap_or_default();
    checks.push(match fs4::available_space(&root) {
        _ if !address.starts_with("unix://") => Check::ok(
            "engine data root",
            format!("{root} of {address}, a remote engine: free space not measured here"),
        ),
        Ok(free) if free < LOW_DISK => Check::problem(
            "engine data root",
            false,
            format!("{root} of {address}: {} free", human(free)),
            "a build needs a few GiB: free space (`docker system prune`) or move the engine's data-root",
        ),
        Ok(free) => Check::ok("engine data root", format!("{root} of {address}: {} free", human(free))),
        Err(e) => Check::ok(
            "engine data root",
            format!("{root} of {address}: free space not measured ({e})"),
        ),
    });
    checks
}

/// The registry `host` the setting `name` names: reachable from this machine with the access
/// forge would use, and where its credentials come from; `fix` when it is not.
pub async fn registry(pool: &Pool, name: &str, host: &str, needs: bool, fix: &str) -> Check {
    let credentials = pool
        .policy()
        .credentials_origin(host)
        .map_or("anonymous (no credentials found)".to_string(), |origin| {
            format!("credentials from {origin}")
        });
    match pool.get(host).await {
        Ok(_) => Check::ok(name, format!("{host} answers; {credentials}")),
        Err(e) => Check::problem(name, needs, format!("{e}; {credentials}"), fix),
    }
}

/// A source image a build starts from: there when the engine has it, else when its registry
/// answers (the engine pulls it then); a problem when neither.
pub async fn source_image(
    engine: Option<&crate::engine::Engine>,
    pool: Option<&Pool>,
    image: &str,
    fix: &str,
) -> Check {
    const NAME: &str = "source image";
    if let Some(engine) = engine {
        if crate::engine::image_id(&engine.docker, image).await.is_ok() {
            return Check::ok(NAME, format!("{image}: in the engine"));
        }
    }
    let host = crate::reference::Reference::parse(image)
        .map(|r| r.host)
        .unwrap_or_default();
    let Some(pool) = pool else {
        return Check::problem(
            NAME,
            true,
            format!("{image}: not in the engine, and the registry access is broken (above)"),
            fix,
        );
    };
    match pool.get(&host).await {
        Ok(_) => Check::ok(
            NAME,
            format!("{image}: not in the engine; {host} answers, the build pulls it"),
        ),
        Err(e) => Check::problem(
            NAME,
            true,
            format!("{image}: not in the engine, and {host} cannot be reached: {e}"),
            fix,
        ),
    }
}

/// The ISO tools for ISOs of `arch`: on this machine with `--iso-tools host` (`host`), else in
/// the builder container (then what this machine lacks is only said).
pub fn iso_tools(host: bool, arch: &Arch) -> Check {
    const NAME: &str = "ISO tools";
    let missing = iso::host_missing(arch);
    match (host, missing.is_empty()) {
        (true, true) => Check::ok(NAME, "squashfs-tools, xorriso, GRUB, mtools and dosfstools on this machine (--iso-tools host)"),
        (true, false) => Check::problem(
            NAME,
            true,
            format!("--iso-tools host, and this machine lacks {}", missing.join(", ")),
            &format!("apt-get install {}, or leave out --iso-tools host to run them in the builder container", missing.join(" ")),
        ),
        (false, _) => Check::ok(NAME, "run in the builder container (--iso-tools container), built on the engine from ISO_TOOLS_IMAGE when missing"),
    }
}

/// QEMU for ISOs of `arch`, needed by `forge verify` and `forge build --verify`.
pub fn qemu(needs: bool, arch: &Arch) -> Check {
    let qemu = &arch.qemu;
    match iso::on_path(&qemu.command) {
        true => Check::ok("QEMU", &qemu.command),
        false => Check::problem(
            "QEMU",
            needs,
            format!("no {} on PATH: forge verify cannot boot ISOs", qemu.command),
            &format!("apt-get install {}", qemu.package),
        ),
    }
}

/// The UEFI firmware of `arch` (OVMF on amd64) for UEFI boots, and its Secure Boot build with
/// Microsoft's keys for `--secure-boot`.
pub fn firmware(uefi: bool, secure_boot: bool, arch: &Arch) -> Vec<Check> {
    let (name, package) = (&arch.firmware.name, &arch.firmware.package);
    let without = match arch.bios {
        Some(_) => "can boot BIOS only",
        None => "cannot boot ISOs",
    };
    let uefi_check = match verify::uefi_firmware(arch) {
        Some(path) => Check::ok(name, path),
        None => Check::problem(
            name,
            uefi,
            format!("no {name} firmware: forge verify {without}"),
            &format!("apt-get install {package}"),
        ),
    };
    let secure = match verify::secure_boot_firmware(arch) {
        Ok(files) => Check::ok("Secure Boot firmware", files.join(", ")),
        Err(missing) => Check::problem(
            "Secure Boot firmware",
            secure_boot,
            format!("{missing} is missing: forge verify --secure-boot cannot run"),
            &format!("apt-get install {package} (bookworm or later ships the Secure Boot build)"),
        ),
    };
    vec![uefi_check, secure]
}

/// KVM, as `forge verify --accel auto` decides; TCG always works, slower.
pub fn kvm() -> Check {
    let (accel, why) = verify::auto_choice();
    Check::ok(
        "KVM",
        format!("forge verify --accel auto uses {accel}: {why}"),
    )
}

/// Whether every check lets the command line run.
pub fn passed(checks: &[Check]) -> bool {
    checks.iter().all(|c| c.status != Status::Error)
}
