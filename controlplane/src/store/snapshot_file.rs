//! The last state-machine snapshot as a plain file, written in a way that
//! does not stall the log's appends.
//!
//! A snapshot of a million routes is about 64 MB. Committed in one go (as a
//! redb transaction does: every page written, then one fsync), it leaves
//! tens of MB dirty in the page cache, and on ext4 (`data=ordered`) the
//! next fsync of the log may have to wait for all of it to reach the disk:
//! route writes stalled up to 400 ms while voters snapshotted. Here the file
//! is written in 1 MiB chunks and synced every 4 MiB, so at most that much
//! is ever dirty, then renamed over the last one (atomic) and the directory
//! synced.
//!
//! Layout: `MAGIC`, the meta's length and the data's length (u64, little
//! endian), the meta (JSON `SnapshotMeta`), the data (the snapshot document).
//! A file whose lengths do not add up is refused, not half-read.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// The file name inside the data directory.
pub const SNAPSHOT_DATA_FILE: &str = "controlplane-snapshot.bin";

const MAGIC: &[u8; 8] = b"MQDSNAP1";
const HEADER: usize = MAGIC.len() + 16;
const CHUNK: usize = 1 << 20;
const SYNC_EVERY: usize = 4 << 20;

/// Where the snapshot file lives.
pub(crate) struct SnapshotFile {
    path: PathBuf,
    directory: PathBuf,
}

impl SnapshotFile {
    pub(crate) fn new(data_dir: &Path) -> SnapshotFile {
        SnapshotFile { path: data_dir.join(SNAPSHOT_DATA_FILE), directory: data_dir.to_path_buf() }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// The stored meta (JSON) and data, or `None` if there is no file yet.
    pub(crate) fn read(&self) -> io::Result<Option<(Vec<u8>, Vec<u8>)>> {
        let mut file = match File::open(&self.path) {
            Ok(file) => file,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(error) => return Err(error),
        };
        let mut header = [0u8; HEADER];
        file.read_exact(&mut header).map_err(|error| invalid(format!("header: {error}")))?;
        if &header[..MAGIC.len()] != MAGIC {
            return Err(invalid("not a snapshot file (wrong magic)".into()));
        }
        let length = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&header[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        let (meta_len, data_len) = (length(MAGIC.len()), length(MAGIC.len() + 8));
        let on_disk = file.metadata()?.len();
        let expected = (HEADER as u64).checked_add(meta_len).and_then(|sum| sum.checked_add(data_len));
        if expected != Some(on_disk) {
            return Err(invalid(format!(
                "lengths do not add up: meta {meta_len} + data {data_len} + header {HEADER} != {on_disk} bytes"
            )));
        }
        let too_big = |_| invalid("lengths too large for this machine".into());
        let mut meta = vec![0u8; usize::try_from(meta_len).map_err(too_big)?];
        file.read_exact(&mut meta)?;
        let mut data = vec![0u8; usize::try_from(data_len).map_err(too_big)?];
        file.read_exact(&mut data)?;
        Ok(Some((meta, data)))
    }

    /// Writes a new snapshot next to the current one, then puts it in its
    /// place. Callers write one at a time (they share the temporary file).
    pub(crate) fn write(&self, meta: &[u8], data: &[u8]) -> io::Result<()> {
        let temporary = self.directory.join(format!("{SNAPSHOT_DATA_FILE}.tmp"));
        let written = write_synced(&temporary, meta, data)
            .and_then(|()| fs::rename(&temporary, &self.path))
            .and_then(|()| File::open(&self.directory)?.sync_all());
        if written.is_err() {
            let _ = fs::remove_file(&temporary);
        }
        written
    }
}

fn write_synced(path: &Path, meta: &[u8], data: &[u8]) -> io::Result<()> {
    let mut file = File::create(path)?;
    let mut header = Vec::with_capacity(HEADER + meta.len());
    header.extend_from_slice(MAGIC);
    header.extend_from_slice(&(meta.len() as u64).to_le_bytes());
    header.extend_from_slice(&(data.len() as u64).to_le_bytes());
    header.extend_from_slice(meta);
    file.write_all(&header)?;
    let mut unsynced = header.len();
    for chunk in data.chunks(CHUNK) {
        file.write_all(chunk)?;
        unsynced += chunk.len();
        if unsynced >= SYNC_EVERY {
            file.sync_data()?;
            unsynced = 0;
        }
    }
    file.sync_all()
}

fn invalid(reason: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, reason)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_snapshot_reads_back_and_a_truncated_one_is_refused() -> io::Result<()> {
        let directory = tempfile::TempDir::new()?;
        let file = SnapshotFile::new(directory.path());
        assert!(file.read()?.is_none(), "no file yet");
        let data: Vec<u8> = (0..(9 << 20)).map(|i| (i % 251) as u8).collect();
        file.write(b"{\"meta\":1}", &data)?;
        let (meta, read) = file.read()?.ok_or_else(|| io::Error::other("written file not found"))?;
        assert_eq!(meta, b"{\"meta\":1}");
        assert!(read == data, "data read back as written");
        file.write(b"{}", b"second")?;
        assert_eq!(file.read()?, Some((b"{}".to_vec(), b"second".to_vec())), "replaced");
        let leftovers = fs::read_dir(directory.path())?.count();
        assert_eq!(leftovers, 1, "no temporary file left behind");

        let whole = fs::read(file.path())?;
        fs::write(file.path(), &whole[..whole.len() - 1])?;
        let error = file.read().err().ok_or_else(|| io::Error::other("a truncated file was read"))?;
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        fs::write(file.path(), b"MQDSNAP0 and then some more bytes")?;
        assert!(file.read().is_err(), "wrong magic refused");
        Ok(())
    }
}
