//! The argument groups several commands share, each parsed into the library's request: the
//! settings' layers, a build's inputs, ISO mastering, registry access, boots.

use std::io::BufRead as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::output::screen::Style;
use crate::output::Format;
use crate::pipeline::boot::{BootRequest, Firmwares, Medias};
use crate::pipeline::build::Mastering;
use crate::pipeline::images::Access;
use crate::pipeline::inputs::{BuildInputs, SettingsRequest};
use crate::pipeline::Error;
use crate::pipeline::{Accel, Credentials, ToolPlace, REGISTRY_DEADLINE};

/// `--format text|json`, for commands that take nothing else.
#[derive(Args)]
pub(super) struct FormatArg {
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

/// Where build settings come from (precedence: defaults < --config < --arg < FORGE_* env < --set).
#[derive(Args)]
pub(super) struct SettingsArgs {
    /// forge.yaml build settings.
    #[arg(
        help_heading = "Settings (defaults < Earthfile < --config < --arg < FORGE_* < --set)",
        long,
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,
    /// CanvOS .arg file (KEY=VALUE lines). Default: the checkout's .arg, unless --config is
    /// given.
    #[arg(
        help_heading = "Settings (defaults < Earthfile < --config < --arg < FORGE_* < --set)",
        long,
        value_name = "FILE"
    )]
    pub arg: Option<PathBuf>,
    /// Override one setting; repeatable. Settings holding a password are refused here: use
    /// FORGE_<KEY> or --secret-file.
    #[arg(help_heading = "Settings (defaults < Earthfile < --config < --arg < FORGE_* < --set)", long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
    /// Read one setting's value from a file (its first line), e.g. a proxy URL with a password;
    /// repeatable.
    #[arg(help_heading = "Settings (defaults < Earthfile < --config < --arg < FORGE_* < --set)", long = "secret-file", value_name = "KEY=FILE", value_parser = parse_set)]
    pub secret_files: Vec<(String, String)>,
    /// The CanvOS checkout: its Dockerfile, certs/, overlay/, k8s_version.json and optional
    /// files. Default: the directory of --arg, else the current directory.
    #[arg(
        help_heading = "Settings (defaults < Earthfile < --config < --arg < FORGE_* < --set)",
        long,
        value_name = "DIR"
    )]
    pub checkout: Option<PathBuf>,
}

fn parse_set(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.to_string()))
        }
        _ => Err("expected KEY=VALUE".into()),
    }
}

impl SettingsArgs {
    pub fn request(&self) -> Result<SettingsRequest, Error> {
        Ok(SettingsRequest {
            config: self.config.clone(),
            arg: self.arg.clone(),
            env: crate::pipeline::process_vars()?,
            sets: self.sets.clone(),
            secret_files: self
                .secret_files
                .iter()
                .map(|(key, path)| (key.clone(), PathBuf::from(path)))
                .collect(),
            checkout: self.checkout.clone(),
        })
    }
}

/// The inputs every command that plans a build takes (`forge build`, `forge iso`, `forge
/// plan`): the settings, the user-data of each site, the templates and overlays, and where
/// the outputs go.
#[derive(Args)]
pub(super) struct InputsArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// Edge installer user-data (#cloud-config), validated before anything is built.
    /// Repeatable, or a directory of *.yaml files: one ISO per user-data, named
    /// <ISO_NAME>-<file stem>.iso when there are several. Default: the checkout's user-data.
    #[arg(help_heading = "Inputs and outputs", long, value_name = "FILE|DIR")]
    pub user_data: Vec<PathBuf>,
    /// Directory whose templates replace the built-in ones.
    #[arg(help_heading = "Inputs and outputs", long, value_name = "DIR")]
    pub templates: Option<PathBuf>,
    /// Overlays directory: files/ go into the images, files-iso/ onto the ISO. Default: the
    /// checkout's overlay/ (CanvOS's name) or overlays/.
    #[arg(help_heading = "Inputs and outputs", long, value_name = "DIR")]
    pub overlays: Option<PathBuf>,
    /// Directory searched for content bundles (content-*/*.zst). Default: the checkout.
    #[arg(help_heading = "Inputs and outputs", long, value_name = "DIR")]
    pub content_dir: Option<PathBuf>,
    /// Where the ISOs, their checksums, manifest.json and profile-snippet.yaml go.
    #[arg(
        help_heading = "Inputs and outputs",
        long,
        value_name = "DIR",
        default_value = "build"
    )]
    pub output: PathBuf,
    /// Stop on warnings as on errors (for CI).
    #[arg(help_heading = "Inputs and outputs", long)]
    pub strict: bool,
}

impl InputsArgs {
    pub fn request(&self) -> Result<BuildInputs, Error> {
        Ok(BuildInputs {
            settings: self.settings.request()?,
            user_data: self.user_data.clone(),
            templates: self.templates.clone(),
            overlays: self.overlays.clone(),
            content_dir: self.content_dir.clone(),
            output: self.output.clone(),
            strict: self.strict,
        })
    }
}

/// How `forge build` and `forge iso` master and push ISOs, and report.
#[derive(Args)]
pub(super) struct MasteringArgs {
    /// Where the ISO tools (squashfs-tools, xorriso, GRUB, mtools, dosfstools) run: in a
    /// builder container forge builds, or on this machine.
    #[arg(help_heading = "ISO mastering", long, value_enum, default_value_t = ToolPlace::Container)]
    pub iso_tools: ToolPlace,
    /// Where the parts every ISO of an installer image shares (squashfs, kernel, initrd, boot
    /// images) are kept between runs; see `forge cache`. Default: $XDG_CACHE_HOME/forge, else
    /// ~/.cache/forge.
    #[arg(help_heading = "ISO mastering", long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Push each ISO as an image, as CanvOS's +iso-disk-image: ISO_NAME:PE_VERSION[-CUSTOM_TAG]
    /// in IMAGE_REGISTRY/IMAGE_REPO (ISO_NAME-<stem> for several user-data), /disk/<ISO file
    /// name> inside.
    #[arg(help_heading = "ISO mastering", long)]
    pub push_iso: bool,
    #[command(flatten)]
    pub access: AccessArgs,
    /// How progress is shown on stderr (`-q`: not at all).
    #[arg(help_heading = "Output", long, value_enum, default_value_t = Style::Auto)]
    pub progress: Style,
    /// `json`: one document on stdout when done (`forge schema output build`).
    #[arg(help_heading = "Output", long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl MasteringArgs {
    pub fn request(&self) -> Result<Mastering, Error> {
        Ok(Mastering {
            tools: self.iso_tools,
            cache_dir: self.cache_dir.clone(),
            push_iso: self.push_iso,
            access: self.access.request()?,
        })
    }
}

/// How to reach registries beyond what the user-data says.
#[derive(Args)]
pub(super) struct AccessArgs {
    /// Extra CA certificate (PEM) to trust for every registry; repeatable.
    #[arg(help_heading = "Registries", long, value_name = "FILE")]
    registry_ca: Vec<PathBuf>,
    /// Username for registries the user-data gives no credentials for.
    #[arg(help_heading = "Registries", long, requires = "password_stdin")]
    username: Option<String>,
    /// Read that user's password from standard input (never pass it as an argument).
    #[arg(help_heading = "Registries", long, requires = "username")]
    password_stdin: bool,
    /// Seconds one registry request may take, retries included (uploads aside).
    #[arg(help_heading = "Registries", long, value_name = "SECONDS", default_value_t = REGISTRY_DEADLINE.as_secs(), value_parser = clap::value_parser!(u64).range(1..))]
    registry_timeout: u64,
}

impl AccessArgs {
    /// The request, the password read from standard input when `--password-stdin` says so.
    pub fn request(&self) -> Result<Access, Error> {
        let credentials = match &self.username {
            Some(username) => {
                let mut password = String::new();
                std::io::stdin()
                    .lock()
                    .read_line(&mut password)
                    .map_err(Error::read("the password from standard input"))?;
                let password = password.trim_end_matches(['\n', '\r']).to_string();
                let username = username.clone();
                Some(Credentials { username, password })
            }
            None => None,
        };
        Ok(Access {
            registry_ca: self.registry_ca.clone(),
            credentials,
            timeout: Duration::from_secs(self.registry_timeout),
        })
    }
}

/// How to boot; shared by `forge verify` and `forge build --verify`.
#[derive(Args)]
pub(super) struct BootArgs {
    /// Firmware: SeaBIOS, OVMF (UEFI), or both.
    #[arg(help_heading = "Boots (with --verify)", long, value_enum, default_value_t = Firmwares::All)]
    firmware: Firmwares,
    /// How the ISO is attached: CD, virtio disk (the USB-stick path through the hybrid MBR),
    /// USB mass storage, or each of them.
    #[arg(help_heading = "Boots (with --verify)", long, value_enum, default_value_t = Medias::Cdrom)]
    media: Medias,
    /// Accelerator. `auto`: KVM on bare metal, TCG in a virtual machine (nested KVM is
    /// unreliable) or without /dev/kvm; a KVM boot that errors or stalls is redone with TCG.
    #[arg(help_heading = "Boots (with --verify)", long, value_enum, default_value_t = Accel::Auto)]
    accel: Accel,
    /// Boot under OVMF with Secure Boot enforced (Microsoft's keys enrolled, as on most
    /// hardware): a boot passes only when Linux also says `Secure boot enabled`. UEFI only.
    #[arg(help_heading = "Boots (with --verify)", long)]
    secure_boot: bool,
    /// Pass when the serial console matches this regular expression. Default: the system
    /// reached the squashfs root (systemd's `Welcome to ...!` after the initramfs).
    #[arg(help_heading = "Boots (with --verify)", long, value_name = "REGEX")]
    expect: Option<String>,
    /// Seconds each boot may take.
    #[arg(
        help_heading = "Boots (with --verify)",
        long,
        value_name = "S",
        default_value_t = 600
    )]
    timeout: u64,
    /// Where the serial console of each boot is saved. Default: ISO_DIR/<iso name>.verify/
    #[arg(help_heading = "Boots (with --verify)", long, value_name = "DIR")]
    log: Option<PathBuf>,
    /// Boots run at once. Default: the number of CPUs.
    #[arg(help_heading = "Boots (with --verify)", long)]
    boot_jobs: Option<usize>,
}

impl BootArgs {
    pub fn request(&self) -> BootRequest {
        BootRequest {
            firmware: self.firmware,
            media: self.media,
            accel: self.accel,
            secure_boot: self.secure_boot,
            expect: self.expect.clone(),
            timeout: Duration::from_secs(self.timeout),
            log: self.log.clone(),
            boot_jobs: self.boot_jobs,
        }
    }
}
