//! forge: a build orchestrator for Palette edge hosts. It validates the build settings, the
//! installer user-data and the cluster profile ([`validate`]), plans and builds the provider
//! and installer images on the Docker Engine ([`plan`], [`render`], [`engine`], [`build`]),
//! pushes them ([`registry`]) and masters the installer ISO ([`iso`]); [`ci`] splits a build
//! into CI jobs; [`doctor`] checks the host for all of it. [`pipeline`] has one function per
//! command; what forge prints goes through one door, [`output`]: no `print!` anywhere else.
//! ARCHITECTURE.md is the map.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod build;
pub mod ci;
pub mod cli;
pub mod config;
pub mod content;
pub mod diagnostic;
pub mod doctor;
pub mod documents;
pub mod engine;
pub mod iso;
pub mod limits;
pub mod oci;
pub mod output;
pub mod pipeline;
pub mod plan;
pub mod profile;
pub mod progress;
pub mod reference;
pub mod registry;
pub mod render;
pub mod report;
pub mod run;
pub mod schema;
pub mod secret;
pub mod units;
pub mod userdata;
pub mod validate;
pub mod yaml;
