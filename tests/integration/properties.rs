//! The parsers never panic, whatever the input: arbitrary text and mutations of real
//! fixtures go through `.arg` parsing, settings resolution, user-data validation and profile
//! checks, and every finding has a real position.

use std::path::Path;

use forge::config::{self, arg, Inputs};
use forge::diagnostic::Diagnostic;
use forge::{profile, userdata, yaml};
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

tests! {
    arg_parsing_never_panics,
    arg_lines_never_panic,
    mutated_arg_files_never_panic,
    user_data_validation_never_panics,
    yaml_shaped_input_never_panics,
    mutated_user_data_never_panics,
    mutated_profiles_never_panic,
    forge_yaml_never_panics,
}

const USER_DATA: &str = include_str!("../fixtures/rules/REG007/fail/user-data.yaml");
const PROFILE: &str = include_str!("../fixtures/rules/PR003/fail/profile.yaml");
const ARG: &str = include_str!("../fixtures/rules/CFG001/pass/build.arg");

fn positioned(diagnostics: &[Diagnostic], text: &str) {
    // YAML also breaks lines at a lone `\r`; count generously.
    let lines = text.split(['\n', '\r']).count().max(1);
    for d in diagnostics {
        assert!(d.pos.line >= 1 && d.pos.column >= 1, "{d:?}");
        assert!(
            d.pos.line <= lines + 1,
            "line {} beyond {lines}: {d:?}",
            d.pos.line
        );
    }
}

fn check_user_data(text: &str) {
    let v = userdata::validate(Path::new("ud.yaml"), text);
    positioned(&v.diagnostics, text);
    let external = v
        .document
        .as_ref()
        .and_then(|d| userdata::external_registry(&d.root));
    let p = profile::parse(Path::new("p.yaml"), text);
    let bundles = [std::path::PathBuf::from("content-x/images.zst")];
    p.check(
        Path::new("p.yaml"),
        text,
        &profile::Against {
            user_data: Path::new("ud.yaml"),
            external: external.as_ref(),
            content_bundles: &bundles,
        },
    );
}

/// A fixture with one span of characters replaced by arbitrary text.
fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    let len = base.chars().count();
    (0..len, 0..8usize, ".{0,12}").prop_map(move |(at, cut, insert)| {
        let chars: Vec<char> = base.chars().collect();
        let end = (at + cut).min(chars.len());
        chars[..at]
            .iter()
            .chain(insert.chars().collect::<Vec<_>>().iter())
            .chain(chars[end..].iter())
            .collect()
    })
}

proptest! {
    // Failing cases are kept beside this file (properties.proptest-regressions): proptest's
    // default would put them in tests/proptest-regressions/, as main.rs is here.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::with_cases(512)
    })]

    fn arg_parsing_never_panics(text in "(?s).{0,200}") {
        let (_, diagnostics) = arg::parse(Path::new(".arg"), &text, &|_| None);
        positioned(&diagnostics, &text);
    }

    fn arg_lines_never_panic(lines in prop::collection::vec("[A-Z_]{0,6}[=]?[ $\"'{}#a-z\\\\]{0,10}", 0..10)) {
        let text = lines.join("\n");
        let inputs = Inputs { arg: Some((".arg".into(), text.clone())), ..Inputs::default() };
        positioned(&config::resolve(&inputs).diagnostics, &text);
    }

    fn mutated_arg_files_never_panic(text in mutated(ARG)) {
        let inputs = Inputs { arg: Some((".arg".into(), text.clone())), ..Inputs::default() };
        positioned(&config::resolve(&inputs).diagnostics, &text);
    }

    fn user_data_validation_never_panics(text in "(?s).{0,300}") {
        check_user_data(&text);
    }

    fn yaml_shaped_input_never_panics(lines in prop::collection::vec("[ ]{0,6}(- )?[a-zA-Z]{0,8}[:]?[ ]?[\\[\\]{}|>&*!'\"a-z0-9,#-]{0,10}", 0..12)) {
        let text = format!("#cloud-config\n{}", lines.join("\n"));
        check_user_data(&text);
        let _ = yaml::parse(&text);
    }

    fn mutated_user_data_never_panics(text in mutated(USER_DATA)) {
        check_user_data(&text);
    }

    fn mutated_profiles_never_panic(text in mutated(PROFILE)) {
        check_user_data(&text);
    }

    fn forge_yaml_never_panics(text in "(?s).{0,200}") {
        let inputs = Inputs { config: Some(("forge.yaml".into(), text.clone())), ..Inputs::default() };
        positioned(&config::resolve(&inputs).diagnostics, &text);
    }
}
