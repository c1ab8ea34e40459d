//! The data dir holds cardholder PII and keys: it is private to the service's
//! user. The process umask is set to `077` before anything is created, so every
//! directory sled, the simulators or we create is `0700` and every file `0600`
//! (sled creates files later too: snapshots, blobs). A data dir from before
//! this rule is tightened at start (the same modes on what it already holds).

use std::{
    fs,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
};

use anyhow::Context as _;

/// Most entries the start-up tightening walks (sled keeps a handful of files
/// and a blob per large value; far fewer than this).
const MAX_ENTRIES: usize = 100_000;

/// Sets the umask to 077, creates `dir` (0700) and tightens what it holds.
pub fn prepare(dir: &Path) -> anyhow::Result<()> {
    // SAFETY: umask only swaps the process's file-mode creation mask; it
    // cannot fail and touches no memory.
    unsafe {
        libc::umask(0o077);
    }
    fs::create_dir_all(dir).with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    tighten(dir).with_context(|| format!("cannot restrict the data dir {} to its owner", dir.display()))
}

/// Directories 0700 and files 0600 under `dir` (symlinks are left alone).
fn tighten(dir: &Path) -> std::io::Result<()> {
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))?;
    let mut stack: Vec<PathBuf> = vec![dir.to_owned()];
    let mut seen = 0usize;
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d)? {
            let entry = entry?;
            seen += 1;
            if seen > MAX_ENTRIES {
                return Ok(());
            }
            let kind = entry.file_type()?;
            let path = entry.path();
            if kind.is_dir() {
                set_mode(&path, 0o700)?;
                stack.push(path);
            } else if kind.is_file() {
                set_mode(&path, 0o600)?;
            }
        }
    }
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> std::io::Result<()> {
    let current = fs::metadata(path)?.permissions().mode() & 0o777;
    if current & !mode != 0 {
        fs::set_permissions(path, fs::Permissions::from_mode(current & mode))?;
    }
    Ok(())
}
