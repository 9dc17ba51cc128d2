//! The JSON documents forge prints (`--format json`, `--progress json`) and writes
//! (`manifest.json`): each names its shape in its first field, `schema` (`forge.<name>/v1`),
//! and each shape is published as a JSON Schema (2020-12, `src/schemas/`), printed by `forge
//! schema output NAME`. A leaf module.

use clap::ValueEnum;
use serde::Serialize;
use serde_json::{Map, Value};

/// The shape of a JSON document forge prints; each is published as a JSON Schema.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Shape {
    /// `forge --version --format json`.
    Version,
    /// `forge doctor`.
    Doctor,
    /// `forge validate`.
    Validate,
    /// `forge config show`.
    Config,
    /// `forge rules`.
    Rules,
    /// `forge build`: the images, the ISOs, the outputs written (and the boots of `--verify`).
    Build,
    /// `forge build --dry-run`: the steps.
    BuildPlan,
    /// One line of `--progress json` on stderr.
    Event,
    /// `forge plan`: the CI jobs.
    Plan,
    /// `forge inspect`.
    Inspect,
    /// `forge verify`.
    Verify,
    /// `forge iso`: the ISOs mastered.
    Iso,
    /// `forge iso push`.
    IsoPush,
    /// `manifest.json`, written by `forge build` and `forge iso` into their output directory.
    Manifest,
    /// `forge cache ls`.
    CacheList,
    /// `forge cache prune`.
    CachePrune,
    /// `forge images rewrite`.
    ImagesRewrite,
    /// `forge registry check`.
    RegistryCheck,
    /// `forge registry sync`.
    RegistrySync,
    /// `forge schema`: a JSON Schema, wrapped.
    Schema,
    /// `forge completions`.
    Completions,
    /// `forge man`.
    Man,
}

impl Shape {
    pub fn name(self) -> &'static str {
        match self {
            Shape::Version => "version",
            Shape::Doctor => "doctor",
            Shape::Validate => "validate",
            Shape::Config => "config",
            Shape::Rules => "rules",
            Shape::Build => "build",
            Shape::BuildPlan => "build-plan",
            Shape::Event => "event",
            Shape::Plan => "plan",
            Shape::Inspect => "inspect",
            Shape::Verify => "verify",
            Shape::Iso => "iso",
            Shape::IsoPush => "iso-push",
            Shape::Manifest => "manifest",
            Shape::CacheList => "cache-list",
            Shape::CachePrune => "cache-prune",
            Shape::ImagesRewrite => "images-rewrite",
            Shape::RegistryCheck => "registry-check",
            Shape::RegistrySync => "registry-sync",
            Shape::Schema => "schema",
            Shape::Completions => "completions",
            Shape::Man => "man",
        }
    }

    /// The value of the document's `schema` field: `forge.<name>/v<version>`.
    pub fn id(self) -> String {
        format!("forge.{}/v1", self.name())
    }

    /// The shape's JSON Schema (2020-12).
    pub fn schema(self) -> Value {
        let text = match self {
            Shape::Version => include_str!("schemas/version.json"),
            Shape::Doctor => include_str!("schemas/doctor.json"),
            Shape::Validate => include_str!("schemas/validate.json"),
            Shape::Config => include_str!("schemas/config.json"),
            Shape::Rules => include_str!("schemas/rules.json"),
            Shape::Build => include_str!("schemas/build.json"),
            Shape::BuildPlan => include_str!("schemas/build-plan.json"),
            Shape::Event => include_str!("schemas/event.json"),
            Shape::Plan => include_str!("schemas/plan.json"),
            Shape::Inspect => include_str!("schemas/inspect.json"),
            Shape::Verify => include_str!("schemas/verify.json"),
            Shape::Iso => include_str!("schemas/iso.json"),
            Shape::IsoPush => include_str!("schemas/iso-push.json"),
            Shape::Manifest => include_str!("schemas/manifest.json"),
            Shape::CacheList => include_str!("schemas/cache-list.json"),
            Shape::CachePrune => include_str!("schemas/cache-prune.json"),
            Shape::ImagesRewrite => include_str!("schemas/images-rewrite.json"),
            Shape::RegistryCheck => include_str!("schemas/registry-check.json"),
            Shape::RegistrySync => include_str!("schemas/registry-sync.json"),
            Shape::Schema => include_str!("schemas/schema.json"),
            Shape::Completions => include_str!("schemas/completions.json"),
            Shape::Man => include_str!("schemas/man.json"),
        };
        serde_json::from_str(text).expect("the published schemas are JSON")
    }

    /// `body` (an object; anything else is kept under `value`) as this shape's document:
    /// `schema` first.
    pub fn document(self, body: impl Serialize) -> serde_json::Result<Value> {
        let mut doc = Map::new();
        doc.insert("schema".into(), Value::String(self.id()));
        match serde_json::to_value(body)? {
            Value::Object(fields) => doc.extend(fields),
            other => {
                doc.insert("value".into(), other);
            }
        }
        Ok(Value::Object(doc))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_publishes_a_schema_that_requires_its_own_id() {
        for shape in Shape::value_variants() {
            let schema = shape.schema();
            assert_eq!(
                schema["properties"]["schema"]["const"],
                shape.id(),
                "{}",
                shape.name()
            );
            assert!(
                schema["required"]
                    .as_array()
                    .is_some_and(|r| r.contains(&"schema".into())),
                "{}",
                shape.name()
            );
            let name = shape.to_possible_value().unwrap();
            assert_eq!(name.get_name(), shape.name());
        }
    }

    #[test]
    fn a_document_starts_with_its_schema() {
        let doc = Shape::Rules
            .document(serde_json::json!({"rules": []}))
            .unwrap();
        let text = serde_json::to_string(&doc).unwrap();
        assert_eq!(text, r#"{"schema":"forge.rules/v1","rules":[]}"#);
    }
}
