//! The outputs a build leaves: `manifest.json` and `profile-snippet.yaml`, each written whole
//! under a temporary name, then renamed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Write `text` to `dir/name` whole: a partial file of this run in `dir` (removed by the next
/// run if this one is killed), then a rename.
pub fn write_output(dir: &Path, name: &str, text: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let mut staged = crate::run::partial_file(dir, name)?;
    staged.write_all(text.as_bytes())?;
    staged.as_file().sync_all()?;
    let path = dir.join(name);
    staged.persist(&path).map_err(|e| e.error)?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_appear_whole_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = write_output(&dir.path().join("build"), "manifest.json", "{}\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
        let names: Vec<_> = std::fs::read_dir(dir.path().join("build"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["manifest.json"]);
    }
}
