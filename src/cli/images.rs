//! `forge images rewrite`, and the images' arguments the registry commands share.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::documents::Shape;
use crate::output::screen::{progress, Style};
use crate::output::{self, Format};
use crate::pipeline::images::{self, ImagesRequest, RewriteOutcome};
use crate::pipeline::{Error, ExitStatus};

#[derive(Subcommand)]
pub(super) enum ImagesCommand {
    /// Print each image's rewritten reference (FROM -> TO).
    Rewrite(ImagesArgs),
}

/// Which images, and the user-data that says where they are pulled from.
#[derive(Args)]
pub(super) struct ImagesArgs {
    /// Edge installer user-data (#cloud-config) with the external registry settings.
    #[arg(long, value_name = "FILE")]
    user_data: PathBuf,
    /// Cluster profile: adds every image its packs reference, and the OS pack's system.uri.
    #[arg(long, value_name = "FILE")]
    profile: Option<PathBuf>,
    /// File listing images, one per line (# comments).
    #[arg(long, value_name = "LIST")]
    from_file: Option<PathBuf>,
    /// Images (references as in a pack: nginx:1.25, quay.io/org/app@sha256:...).
    #[arg(value_name = "IMAGE")]
    images: Vec<String>,
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

impl ImagesArgs {
    pub fn request(&self) -> ImagesRequest {
        ImagesRequest {
            user_data: self.user_data.clone(),
            profile: self.profile.clone(),
            from_file: self.from_file.clone(),
            images: self.images.clone(),
        }
    }
}

pub(super) fn run(command: ImagesCommand) -> Result<ExitStatus, Error> {
    let ImagesCommand::Rewrite(args) = command;
    let rewritten = images::rewrite(&args.request(), &progress(Style::Plain))?;
    output::outcome(
        args.format,
        Shape::ImagesRewrite,
        &rewritten,
        RewriteOutcome::text,
    )?;
    Ok(ExitStatus::Success)
}
