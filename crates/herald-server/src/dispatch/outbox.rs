//! The file outbox: where mail goes when no relay is configured, so that
//! herald runs anywhere (a laptop, CI) and shows exactly what it would
//! have sent. Each message is written atomically as `<dir>/<id>.eml`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// A directory of `.eml` files.
#[derive(Debug, Clone)]
pub(crate) struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub(crate) fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Writes the message durably (temporary file, fsync, rename) and
    /// returns its path. A crash leaves either the whole file or none.
    /// Mail is private: the file is created 0600 and a directory that
    /// does not exist yet 0700, whatever the umask.
    pub(crate) async fn write(&self, id: &str, bytes: Vec<u8>) -> std::io::Result<PathBuf> {
        let dir = self.dir.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            private_dir(&dir)?;
            let path = dir.join(format!("{id}.eml"));
            let tmp = dir.join(format!(".{id}.eml.tmp"));
            let mut file = private_file(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            // Make the rename itself durable.
            std::fs::File::open(&dir)?.sync_all()?;
            Ok(path)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// Creates `dir` (and its missing parents) readable by the owner only.
fn private_dir(dir: &Path) -> std::io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates (or truncates) `path`, readable and writable by the owner only.
fn private_file(path: &Path) -> std::io::Result<std::fs::File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}
