//! Files a test writes (keys, certificates), in a directory of its own.

/// A directory of the test's files (keys, certificates), removed when dropped.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    #[allow(clippy::new_without_default)] // creates a directory: not a default value
    pub fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("prs-ingress-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    /// Where `name` is (or would be) in the directory.
    pub fn path(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }

    /// Writes `contents` to `name` in the directory; returns its path as a string.
    pub fn write(&self, name: &str, contents: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, contents).unwrap();
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
