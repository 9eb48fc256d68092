//! Trusted files, as OpenSSH's StrictModes has them: the data directory, the master key file,
//! the SQLite store (with its WAL and shared-memory files) and the worker lock are used only if
//! they belong to the user running rotor (or root) and no one else may write them; the key and
//! store files not even read them. A symlink is judged by what it points to, and by the
//! directories holding the link and its target. rotor refuses what fails, naming the path and
//! the fix; it never loosens or repairs modes it finds.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What a checked path is, for the rules and the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The data directory: no write access for group or others.
    DataDir,
    /// The master key file, the store file: no access at all for group or others.
    Private,
    /// The worker lock: no write access for group or others.
    Lock,
}

/// Checks `path` (which must exist) and the directories it depends on.
#[cfg(unix)]
pub fn check(path: &Path, what: &str, kind: Kind) -> Result<()> {
    use std::os::unix::fs::MetadataExt;

    let meta = std::fs::metadata(path)
        .map_err(|e| Error::config(format!("cannot read {what} {}: {e}", path.display())))?;
    check_owner(path, what, meta.uid())?;
    let mode = meta.mode() & 0o7777;
    let (forbidden, fix) = match kind {
        Kind::DataDir => (0o022, "chmod 700"),
        Kind::Private => (0o077, "chmod 600"),
        Kind::Lock => (0o022, "chmod 600"),
    };
    if mode & forbidden != 0 {
        let who = if mode & 0o022 != 0 {
            "writable"
        } else {
            "readable"
        };
        return Err(Error::config(format!(
            "{what} {} is {who} by others (mode {:04o}); run: {fix} {}",
            path.display(),
            mode & 0o777,
            path.display()
        )));
    }
    // The directories that hold the link and what it points to must be ours as well (a file's
    // own directory for a plain file: the data directory, checked on its own).
    let link = std::fs::symlink_metadata(path)
        .map_err(|e| Error::config(format!("cannot read {what} {}: {e}", path.display())))?;
    if link.file_type().is_symlink() {
        let target = std::fs::canonicalize(path)
            .map_err(|e| Error::config(format!("cannot resolve {what} {}: {e}", path.display())))?;
        for dir in [parent(path), parent(&target)].into_iter().flatten() {
            check_holder(&dir, what, path)?;
        }
    }
    Ok(())
}

/// [`check`]s `path` as `kind`, then reads it, at most `max` bytes (a larger file is refused
/// without being held in memory).
pub fn read_checked(
    path: &Path,
    what: &str,
    kind: Kind,
    max: u64,
) -> Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::io::Read;
    check(path, what, kind)?;
    let mut buf = zeroize::Zeroizing::new(Vec::new());
    open_regular(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut buf))
        .map_err(|e| Error::config(format!("cannot read {what} {}: {e}", path.display())))?;
    if buf.len() as u64 > max {
        return Err(Error::config(format!(
            "{what} {} is larger than {max} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// Opens `path` for reading if it is a regular file. A FIFO with no writer would hold the open,
/// then the read, forever; a directory or a device is no file to read a secret from. The open
/// never waits (`O_NONBLOCK`, which regular files ignore), and the opened file is checked too,
/// since the path may name something else by then.
pub fn open_regular(path: &Path) -> std::io::Result<std::fs::File> {
    let not_regular = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file (FIFOs, devices and directories are refused)",
        )
    };
    if !std::fs::metadata(path)?.is_file() {
        return Err(not_regular());
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NONBLOCK);
    }
    let file = options.open(path)?;
    if !file.metadata()?.is_file() {
        return Err(not_regular());
    }
    Ok(file)
}

/// Reads a file others must not be able to change (a template's source): opened without
/// following a final symlink (`O_NOFOLLOW`) and judged by what was opened — a regular file that
/// belongs to the user running rotor or root, writable by no one else — in a directory that is
/// ours or root's and writable by no one else (unless sticky). At most `max` bytes.
#[cfg(unix)]
pub fn read_trusted(path: &Path, what: &str, max: u64) -> Result<Vec<u8>> {
    use std::io::Read;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let fail =
        |e: std::io::Error| Error::config(format!("cannot read {what} {}: {e}", path.display()));
    if let Some(dir) = parent(path) {
        check_holder(&dir, what, path)?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| {
            if e.raw_os_error() == Some(libc::ELOOP) {
                Error::config(format!(
                    "{what} {} is a symlink; name the file itself",
                    path.display()
                ))
            } else {
                fail(e)
            }
        })?;
    let meta = file.metadata().map_err(fail)?;
    if !meta.is_file() {
        return Err(Error::config(format!(
            "{what} {} is not a regular file",
            path.display()
        )));
    }
    check_owner(path, what, meta.uid())?;
    let mode = meta.mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(Error::config(format!(
            "{what} {} is writable by others (mode {mode:04o}); run: chmod go-w {}",
            path.display(),
            path.display()
        )));
    }
    let mut buf = Vec::new();
    file.take(max + 1).read_to_end(&mut buf).map_err(fail)?;
    if buf.len() as u64 > max {
        return Err(Error::config(format!(
            "{what} {} is larger than {max} bytes",
            path.display()
        )));
    }
    Ok(buf)
}

/// Creates `path` with mode 0600 holding `bytes`, synced; refuses to overwrite a file.
pub fn create_private(path: &Path, what: &str, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
        .open(path)
        .and_then(|mut f| f.write_all(bytes).and_then(|_| f.sync_all()))
        .map_err(|e| Error::config(format!("cannot create {what} {}: {e}", path.display())))
}

/// [`check`] for a file that may come and go (SQLite's `-wal` and `-shm`, which another
/// process removes when it closes the store): one that is not there is fine.
pub fn check_if_present(path: &Path, what: &str, kind: Kind) -> Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        _ => match check(path, what, kind) {
            Err(_) if std::fs::symlink_metadata(path).is_err() => Ok(()), // gone meanwhile
            other => other,
        },
    }
}

#[cfg(not(unix))]
pub fn check(_path: &Path, _what: &str, _kind: Kind) -> Result<()> {
    Ok(())
}

#[cfg(unix)]
fn check_owner(path: &Path, what: &str, uid: u32) -> Result<()> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let me = unsafe { libc::geteuid() };
    if uid != me && uid != 0 {
        return Err(Error::config(format!(
            "{what} {} belongs to uid {uid}, not to the user running rotor (uid {me}) or root; use a {what} of your own (or: chown {me} {})",
            path.display(),
            path.display()
        )));
    }
    Ok(())
}

/// A directory holding a symlink or its target: ours or root's, and writable by no one else
/// unless sticky (as /tmp is: others cannot replace what they do not own there).
#[cfg(unix)]
pub fn check_holder(dir: &Path, what: &str, path: &Path) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(dir)
        .map_err(|e| Error::config(format!("cannot read {}: {e}", dir.display())))?;
    check_owner(dir, &format!("the directory holding {what}"), meta.uid())?;
    let mode = meta.mode();
    if mode & 0o022 != 0 && mode & 0o1000 == 0 {
        return Err(Error::config(format!(
            "{what} {} is reached through {}, which others may write (mode {:04o}); move it to a directory of your own",
            path.display(),
            dir.display(),
            mode & 0o777
        )));
    }
    Ok(())
}

fn parent(path: &Path) -> Option<PathBuf> {
    let abs = std::path::absolute(path).ok()?;
    abs.parent().map(Path::to_path_buf)
}
