//! forge's integration tests, one binary: a module per area, each listing its tests and what
//! they need from the machine ([`tests!`]), run by [`harness`]. `cargo test --test
//! integration iso::` runs one module; a test whose components are missing here is reported
//! as ignored (with `CI=true` it fails).

#[path = "../support/mod.rs"]
mod support;

#[macro_use]
mod harness;

mod build;
mod canvos_settings;
mod cli;
mod corpus;
mod hostile;
mod injection;
mod iso;
mod iso_corrupt;
mod matrix;
mod output;
mod properties;
mod readme;
mod registry;
mod releases;
mod rules;
mod secrets;
mod stops;
mod tidy;

fn main() -> std::process::ExitCode {
    harness::run(&[
        ("build", build::TESTS),
        ("canvos_settings", canvos_settings::TESTS),
        ("cli", cli::TESTS),
        ("corpus", corpus::TESTS),
        ("hostile", hostile::TESTS),
        ("injection", injection::TESTS),
        ("iso", iso::TESTS),
        ("iso_corrupt", iso_corrupt::TESTS),
        ("matrix", matrix::TESTS),
        ("output", output::TESTS),
        ("properties", properties::TESTS),
        ("readme", readme::TESTS),
        ("registry", registry::TESTS),
        ("releases", releases::TESTS),
        ("rules", rules::TESTS),
        ("secrets", secrets::TESTS),
        ("stops", stops::TESTS),
        ("tidy", tidy::TESTS),
    ])
}
