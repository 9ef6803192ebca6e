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
    pub(crate) async fn write(&self, id: &str, bytes: Vec<u8>) -> std::io::Result<PathBuf> {
        let dir = self.dir.clone();
        let id = id.to_owned();
        tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let path = dir.join(format!("{id}.eml"));
            let tmp = dir.join(format!(".{id}.eml.tmp"));
            let mut file = std::fs::File::create(&tmp)?;
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
