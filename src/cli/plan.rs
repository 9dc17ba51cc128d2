//! `forge plan`: the build as CI jobs, or a CI file running them.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use super::args::InputsArgs;
use crate::documents::Shape;
use crate::output;
use crate::output::screen::{progress, Style};
use crate::pipeline::build::{self, PlanOutput, PlanRequest};
use crate::pipeline::{Error, ExitStatus};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum PlanFormat {
    /// The jobs, one per line, with what each makes.
    Text,
    /// `forge schema output plan`.
    Json,
    /// A GitHub Actions workflow.
    GithubActions,
    /// A GitLab CI pipeline.
    GitlabCi,
}

#[derive(Args)]
pub(super) struct PlanArgs {
    #[command(flatten)]
    inputs: InputsArgs,
    /// CA certificates added to the images' trust store. Default: the checkout's certs/.
    #[arg(long, value_name = "DIR")]
    certs: Option<PathBuf>,
    /// The registry cache the jobs share images through (their --cache-from and --cache-to):
    /// `registry` (IMAGE_REGISTRY/forge-cache) or a repository.
    #[arg(long, value_name = "registry|REPOSITORY", default_value = "registry")]
    cache: String,
    #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
    format: PlanFormat,
    /// The forge git repository the CI files' first job builds forge from (cargo install
    /// --git), for the other jobs. Required by github-actions and gitlab-ci.
    #[arg(long, value_name = "URL", required_if_eq_any = [("format", "github-actions"), ("format", "gitlab-ci")])]
    forge_git: Option<String>,
    /// The commit of --forge-git to build. Default: the commit this forge was built from.
    #[arg(long, value_name = "COMMIT")]
    forge_rev: Option<String>,
    /// The branch whose pushes run the GitHub Actions workflow (the repository's default
    /// branch; GitLab pipelines read $CI_DEFAULT_BRANCH).
    #[arg(long, value_name = "NAME", default_value = "main")]
    branch: String,
    /// The ISO job uploads the ISOs with its output directory as a CI artifact. They hold
    /// the user-data's credentials, so by default they are left out.
    #[arg(long)]
    upload_iso: bool,
}

pub(super) fn run(args: PlanArgs) -> Result<ExitStatus, Error> {
    let request = PlanRequest {
        inputs: args.inputs.request()?,
        certs: args.certs,
        cache: args.cache,
        output: match args.format {
            PlanFormat::Text | PlanFormat::Json => PlanOutput::Jobs,
            PlanFormat::GithubActions => PlanOutput::GithubActions,
            PlanFormat::GitlabCi => PlanOutput::GitlabCi,
        },
        forge_git: args.forge_git,
        forge_rev: args.forge_rev,
        branch: args.branch,
        upload_iso: args.upload_iso,
    };
    let plan = build::plan(&request, &progress(Style::Plain))?;
    match args.format {
        PlanFormat::Json => output::json(Shape::Plan, &plan)?,
        _ => output::text(&plan.text())?,
    }
    Ok(ExitStatus::Success)
}
