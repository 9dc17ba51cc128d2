//! The rules of ARCHITECTURE.md that code can check, in the manner of rust-analyzer's tidy
//! tests: modules import only lower layers (so no import circle), the command line reaches the
//! library only through its entry points and the output door, and no setting is looked up by
//! its name outside `config`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

tests! {
    the_layer_table_names_every_module_once,
    modules_import_only_lower_layers,
    the_command_line_reaches_the_library_through_its_entry_points,
    no_setting_is_looked_up_by_name_outside_config,
    integration_tests_are_listed_for_the_harness,
}

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The layer of each top-level module, from ARCHITECTURE.md's table.
fn layers() -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let table = text
        .split("<!-- layers: begin -->")
        .nth(1)
        .and_then(|rest| rest.split("<!-- layers: end -->").next())
        .expect("ARCHITECTURE.md has the layer table");
    let mut layers = BTreeMap::new();
    for row in table
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("---"))
    {
        let cells: Vec<&str> = row.trim_matches('|').split('|').map(str::trim).collect();
        let Ok(layer) = cells[0].parse::<usize>() else {
            continue;
        };
        for module in cells[1].split(',').map(str::trim) {
            assert!(
                layers.insert(module.to_string(), layer).is_none(),
                "{module} is in two layers"
            );
        }
    }
    layers
}

/// Every source file with its top-level module and its code (tests and comments left out).
fn sources() -> Vec<(PathBuf, String, String)> {
    let src = root().join("src");
    let mut found = Vec::new();
    for entry in walkdir::WalkDir::new(&src) {
        let entry = entry.unwrap();
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = first.to_string_lossy().trim_end_matches(".rs").to_string();
        let text = std::fs::read_to_string(path).unwrap();
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        let code: String = code
            .lines()
            .map(|l| l.split("//").next().unwrap_or_default())
            .collect::<Vec<_>>()
            .join("\n");
        found.push((relative.to_path_buf(), module, code));
    }
    found
}

/// The top-level modules `code` names with `crate::`.
fn imports(code: &str) -> Vec<String> {
    let path = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let group = regex::Regex::new(r"crate::\{([^}]*)\}").unwrap();
    let mut names: Vec<String> = path.captures_iter(code).map(|c| c[1].to_string()).collect();
    for c in group.captures_iter(code) {
        let members = c[1]
            .split(',')
            .map(|m| m.trim().split("::").next().unwrap_or_default());
        names.extend(members.filter(|m| !m.is_empty()).map(str::to_string));
    }
    names.sort();
    names.dedup();
    names
}

fn the_layer_table_names_every_module_once() {
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let mut declared: Vec<String> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|m| m.trim_end_matches(';').to_string())
        .collect();
    declared.sort();
    let listed: Vec<String> = layers().into_keys().collect();
    assert_eq!(
        listed, declared,
        "ARCHITECTURE.md's layers and src/lib.rs differ"
    );
}

fn modules_import_only_lower_layers() {
    let layers = layers();
    let mut wrong = Vec::new();
    for (file, module, code) in sources() {
        let Some(&own) = layers.get(&module) else {
            continue; // lib.rs, main.rs
        };
        for used in imports(&code).into_iter().filter(|u| *u != module) {
            match layers.get(&used) {
                Some(&layer) if layer < own => {}
                Some(&layer) => wrong.push(format!(
                    "{}: {module} (layer {own}) imports {used} (layer {layer})",
                    file.display()
                )),
                None => wrong.push(format!(
                    "{}: {used} is not in the layer table",
                    file.display()
                )),
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

fn the_command_line_reaches_the_library_through_its_entry_points() {
    let allowed = ["pipeline", "output", "documents", "cli"];
    let mut wrong = Vec::new();
    for (file, module, code) in sources().into_iter().filter(|s| s.1 == "cli") {
        for used in imports(&code)
            .into_iter()
            .filter(|u| !allowed.contains(&u.as_str()))
        {
            wrong.push(format!("{}: {module} uses crate::{used}", file.display()));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

fn no_setting_is_looked_up_by_name_outside_config() {
    let lookup =
        regex::Regex::new(r#"\.(get|flag|file|path|setting)\("[A-Z][A-Z0-9_]+"\)"#).unwrap();
    let mut wrong = Vec::new();
    for (file, module, code) in sources().into_iter().filter(|s| s.1 != "config") {
        for found in lookup.find_iter(&code) {
            wrong.push(format!("{} ({module}): {}", file.display(), found.as_str()));
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// The harness runs what each module's `tests!` lists; a `#[test]` function here would compile
/// to nothing (the binary is built without libtest) and never run.
fn integration_tests_are_listed_for_the_harness() {
    let dir = root().join("tests/integration");
    let mut wrong = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            if text.lines().any(|l| l.trim() == concat!("#[", "test]")) {
                wrong.push(format!(
                    "{}: list it in tests! instead of #[test]",
                    path.display()
                ));
            }
        }
    }
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}
