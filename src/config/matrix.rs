//! The Kubernetes version matrix (`k8s_version.json` shape: `{"k3s": ["1.29.6", ...]}`), with
//! the default shipped in the binary.

use std::collections::BTreeMap;

use crate::limits::clip;

/// The matrix forge ships, used when `K8S_VERSION_FILE` is not set.
pub const DEFAULT: &str = include_str!("../../k8s_version.json");

/// Versions per Kubernetes distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    versions: BTreeMap<String, Vec<String>>,
}

/// A matrix file that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct MatrixError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl Matrix {
    pub fn parse(text: &str) -> Result<Matrix, MatrixError> {
        let versions: BTreeMap<String, Vec<String>> =
            serde_json::from_str(text).map_err(|e| MatrixError {
                line: e.line().max(1),
                column: e.column().max(1),
                message: format!(
                    "expected {{\"distribution\": [\"x.y.z\", ...]}}: {}",
                    clip(&e.to_string())
                ),
            })?;
        for (distribution, list) in &versions {
            if let Some(bad) = list.iter().find(|v| !is_version(v)) {
                return Err(MatrixError {
                    line: 1,
                    column: 1,
                    message: format!(
                        "{}: `{}` is not a version x.y.z",
                        clip(distribution),
                        clip(bad)
                    ),
                });
            }
        }
        Ok(Matrix { versions })
    }

    pub fn default_matrix() -> Matrix {
        Matrix::parse(DEFAULT).expect("the shipped k8s_version.json is valid")
    }

    /// The versions of a distribution, oldest first as listed.
    pub fn versions(&self, distribution: &str) -> &[String] {
        self.versions.get(distribution).map_or(&[], Vec::as_slice)
    }
}

/// `x.y.z` with numeric parts.
pub fn is_version(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_shipped_matrix() {
        let m = Matrix::default_matrix();
        assert!(!m.versions("k3s").is_empty());
        assert!(m.versions("nope").is_empty());
    }

    #[test]
    fn rejects_wrong_shapes_with_a_position() {
        let e = Matrix::parse("{\"k3s\": [1.29]}").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(Matrix::parse("{\"k3s\": [\"1.29\"]}")
            .unwrap_err()
            .message
            .contains("1.29"));
    }
}
