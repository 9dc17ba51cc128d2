//! What a build leaves in its output directory besides the ISOs: `manifest.json` (every image
//! built and every ISO mastered, with the inputs each was made from; shape `forge.manifest/v1`)
//! and `profile-snippet.yaml` (the OS pack values for the cluster profile), each written whole.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::build::{BuildError, Built};
use crate::config::Settings;
use crate::documents::Shape;
use crate::iso::Mastered;
use crate::oci::Digest;
use crate::plan::Kind;
use crate::render::{context, Templates};
use crate::run::write_output;

/// `manifest.json`.
#[derive(Serialize)]
struct Manifest<'a> {
    forge_version: &'static str,
    artifacts: Vec<Artifact<'a>>,
}

/// One image or ISO of the manifest, told apart by `kind`.
#[derive(Serialize)]
#[serde(untagged)]
enum Artifact<'a> {
    Image {
        kind: &'static str,
        reference: &'a str,
        image_id: &'a str,
        digest: &'a Option<Digest>,
        pushed_bytes: Option<u64>,
        size: u64,
        cached: bool,
        inputs: ImageInputs<'a>,
    },
    Iso {
        kind: &'static str,
        path: &'a Path,
        sha256: &'a str,
        size: u64,
        checksum_file: &'a Path,
        reference: Option<&'a str>,
        digest: Option<&'a Digest>,
        cached: bool,
        inputs: IsoInputs<'a>,
    },
}

/// What an image was made from: its input hash; a provider image's Kubernetes too.
#[derive(Serialize)]
struct ImageInputs<'a> {
    input_hash: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    k8s_distribution: Option<Option<&'static str>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    k8s_version: Option<&'a str>,
}

/// What an ISO was mastered from.
#[derive(Serialize)]
struct IsoInputs<'a> {
    image: &'a str,
    user_data: &'a Path,
    rootfs_bytes: u64,
    squashfs_compression: &'static str,
    efi_loader: &'a [String],
    content_bundles: Vec<BundleDoc<'a>>,
}

/// A content bundle and where it went on the ISO.
#[derive(Serialize)]
struct BundleDoc<'a> {
    source: &'a Path,
    size: u64,
    iso_paths: &'a [String],
}

fn image<'a>(built: &'a Built, settings: &Settings) -> Artifact<'a> {
    let version = match &built.step.kind {
        Kind::Provider { version } => Some(version.as_str()),
        _ => None,
    };
    Artifact::Image {
        kind: built.step.kind.label(),
        reference: &built.step.tag,
        image_id: &built.image_id,
        digest: &built.digest,
        pushed_bytes: built.pushed_bytes,
        size: built.size,
        cached: built.cached,
        inputs: ImageInputs {
            input_hash: &built.step.input_hash,
            k8s_distribution: version.map(|_| settings.k8s_distribution.map(|d| d.as_str())),
            k8s_version: version,
        },
    }
}

fn iso<'a>(iso: &'a Mastered, settings: &Settings) -> Artifact<'a> {
    let bundle = |b: &'a crate::iso::Bundle| BundleDoc {
        source: &b.source,
        size: b.size,
        iso_paths: &b.parts,
    };
    Artifact::Iso {
        kind: "iso",
        path: &iso.path,
        sha256: &iso.sha256,
        size: iso.size,
        checksum_file: &iso.checksum_path,
        reference: iso.pushed.as_ref().map(|(tag, _)| tag.as_str()),
        digest: iso.pushed.as_ref().map(|(_, digest)| digest),
        cached: iso.cached,
        inputs: IsoInputs {
            image: &iso.image,
            user_data: &iso.user_data,
            rootfs_bytes: iso.rootfs_bytes,
            squashfs_compression: settings.squashfs_compression.as_str(),
            efi_loader: &iso.efi_loader,
            content_bundles: iso.bundles.iter().map(bundle).collect(),
        },
    }
}

/// Write `manifest.json` to `dir`: every image built and every ISO, with their inputs.
pub fn write_manifest(
    dir: &Path,
    settings: &Settings,
    built: &[Built],
    isos: &[Mastered],
) -> Result<PathBuf, BuildError> {
    let artifacts = built
        .iter()
        .map(|b| image(b, settings))
        .chain(isos.iter().map(|i| iso(i, settings)))
        .collect();
    let manifest = Manifest {
        forge_version: env!("CARGO_PKG_VERSION"),
        artifacts,
    };
    let document = Shape::Manifest
        .document(manifest)
        .expect("the manifest serializes");
    let text = serde_json::to_string_pretty(&document).expect("the manifest serializes") + "\n";
    write(dir, "manifest.json", &text)
}

/// Write `manifest.json` and `profile-snippet.yaml` to `dir`; returns the snippet.
pub fn write_outputs(
    dir: &Path,
    settings: &Settings,
    templates: &Templates,
    built: &[Built],
    isos: &[Mastered],
) -> Result<String, BuildError> {
    write_manifest(dir, settings, built, isos)?;
    let snippet = templates.render("profile-snippet.yaml", &context(settings))?;
    write(dir, "profile-snippet.yaml", &snippet)?;
    Ok(snippet)
}

fn write(dir: &Path, name: &str, text: &str) -> Result<PathBuf, BuildError> {
    write_output(dir, name, text).map_err(|source| BuildError::Output {
        path: dir.join(name),
        source,
    })
}
