//! Temporary directories for tests: unique per process and per call,
//! removed with everything in them when dropped.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// A fresh, empty directory under the system's temporary directory,
/// removed with its contents when dropped.
///
/// Its name holds a tag, the process id and a counter, so directories of
/// tests running side by side (in one process or several) never collide.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates a directory named after `tag`.
    ///
    /// # Panics
    ///
    /// When the directory cannot be created.
    pub fn new(tag: &str) -> TempDir {
        Self::try_new(tag)
            .unwrap_or_else(|e| panic!("cannot create a temporary directory for {tag}: {e}"))
    }

    /// Creates a directory named after `tag`, or says why it could not.
    pub fn try_new(tag: &str) -> io::Result<TempDir> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "gdp-test-{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        // Left over from an earlier process with the same id.
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(TempDir { path })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A subdirectory, created if it does not exist yet.
    ///
    /// # Panics
    ///
    /// When it cannot be created.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let path = self.path.join(name);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        path
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        // Nothing to do about a failure here; the OS cleans its temporary
        // directory eventually.
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directories_are_distinct_and_removed_on_drop() {
        let a = TempDir::new("unit");
        let b = TempDir::new("unit");
        assert_ne!(a.path(), b.path());
        assert!(a.path().is_dir() && b.path().is_dir());
        let sub = a.subdir("nested");
        std::fs::write(sub.join("file"), b"x").expect("writable");
        let path = a.path().to_owned();
        drop(a);
        assert!(!path.exists());
        assert!(b.path().is_dir());
    }
}
