//! Writing a rendered file: only when its text, mode or owner changed, and atomically — a
//! temporary file in the destination's own directory (created with the final mode, so the text
//! is never open to others), given its owner and mode through its open descriptor (never by
//! path, which another user could point elsewhere), written, synced, renamed over the
//! destination, and the directory synced. A reader sees the old file or the new one, never a
//! part, never an empty file.
//!
//! The destination's directory must belong to the agent's user or root and be writable by no
//! one else (unless sticky, as /tmp): whoever may rename entries there could swap the temporary
//! file, or the destination, under the agent.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Writes `text` to `path` with `mode` and `owner` (`USER[:GROUP]`) unless the file already
/// holds exactly it with that mode and owner. `Ok(true)` when the file changed.
pub fn write_if_changed(
    path: &Path,
    text: &[u8],
    mode: u32,
    owner: Option<&str>,
) -> Result<bool, String> {
    let ids = owner.map(resolve_owner).transpose()?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| format!("{} names no file", path.display()))?;
    crate::files::check_holder(dir, "destination", path).map_err(|e| e.to_string())?;
    if up_to_date(path, text, mode, ids) {
        return Ok(false);
    }
    let temp = dir.join(format!(
        ".{}.rotor-{}",
        name.to_string_lossy(),
        &crate::crypto::random_id()[..12]
    ));
    let result = (|| -> Result<bool, String> {
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&temp)
            .map_err(|e| format!("cannot create {}: {e}", temp.display()))?;
        // Owner, then mode (the umask may have narrowed the mode given at creation), both on
        // the descriptor: what is changed is the file created here, whatever the name points
        // to by now.
        if let Some((uid, gid)) = ids {
            std::os::unix::fs::fchown(&file, Some(uid), gid).map_err(|e| {
                format!(
                    "cannot give {} to {}: {e}",
                    temp.display(),
                    owner.unwrap_or_default()
                )
            })?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("cannot set the mode of {}: {e}", temp.display()))?;
        file.write_all(text)
            .and_then(|_| file.sync_all())
            .map_err(|e| format!("cannot write {}: {e}", temp.display()))?;
        std::fs::rename(&temp, path)
            .map_err(|e| format!("cannot rename onto {}: {e}", path.display()))?;
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(true)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Whether `path` is a regular file holding exactly `text` (read no further than its length),
/// with `mode` and the owner `ids` (when given).
fn up_to_date(path: &Path, text: &[u8], mode: u32, ids: Option<(u32, Option<u32>)>) -> bool {
    let Ok(file) = crate::files::open_regular(path) else {
        return false;
    };
    let Ok(meta) = file.metadata() else {
        return false;
    };
    let owner_ok =
        ids.is_none_or(|(uid, gid)| meta.uid() == uid && gid.is_none_or(|g| meta.gid() == g));
    if meta.mode() & 0o7777 != mode || !owner_ok {
        return false;
    }
    let mut buf = Vec::with_capacity(text.len() + 1);
    if file
        .take(text.len() as u64 + 1)
        .read_to_end(&mut buf)
        .is_err()
    {
        return false;
    }
    let same = buf == text;
    zeroize::Zeroize::zeroize(&mut buf);
    same
}

/// `USER[:GROUP]`, names or numeric ids, as a uid and an optional gid.
fn resolve_owner(owner: &str) -> Result<(u32, Option<u32>), String> {
    let (user, group) = match owner.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (owner, None),
    };
    let uid = match user.parse::<u32>() {
        Ok(id) => id,
        Err(_) => lookup(user, false)?,
    };
    let gid = match group {
        None => None,
        Some(g) => Some(match g.parse::<u32>() {
            Ok(id) => id,
            Err(_) => lookup(g, true)?,
        }),
    };
    Ok((uid, gid))
}

/// A user's uid or a group's gid by name (getpwnam_r / getgrnam_r).
fn lookup(name: &str, group: bool) -> Result<u32, String> {
    let what = if group { "group" } else { "user" };
    let c_name = std::ffi::CString::new(name)
        .map_err(|_| format!("no {what} '{}'", crate::model::printable(name)))?;
    let mut buf = vec![0u8; 16 * 1024];
    let found = if group {
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::group = std::ptr::null_mut();
        // SAFETY: getgrnam_r writes only into `grp` and `buf`, which outlive the call.
        let rc = unsafe {
            libc::getgrnam_r(
                c_name.as_ptr(),
                &mut grp,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            )
        };
        (rc == 0 && !out.is_null()).then_some(grp.gr_gid)
    } else {
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut out: *mut libc::passwd = std::ptr::null_mut();
        // SAFETY: getpwnam_r writes only into `pwd` and `buf`, which outlive the call.
        let rc = unsafe {
            libc::getpwnam_r(
                c_name.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut out,
            )
        };
        (rc == 0 && !out.is_null()).then_some(pwd.pw_uid)
    };
    found.ok_or_else(|| format!("no {what} '{}'", crate::model::printable(name)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_changes_with_the_mode_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.env");
        // SAFETY: geteuid has no preconditions.
        let me = unsafe { libc::geteuid() }.to_string();
        assert!(write_if_changed(&path, b"A=1\n", 0o640, Some(&me)).unwrap());
        assert_eq!(std::fs::read(&path).unwrap(), b"A=1\n");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        assert!(!write_if_changed(&path, b"A=1\n", 0o640, None).unwrap());
        assert!(write_if_changed(&path, b"A=12\n", 0o640, None).unwrap());
        assert!(write_if_changed(&path, b"A=1\n", 0o640, None).unwrap());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        assert!(resolve_owner("root:root").is_ok());
        assert!(resolve_owner("no-such-user-here").is_err());
    }

    /// Another process renames each temporary file away the moment it appears and leaves a
    /// symlink to a victim in its place (what the owner of a shared directory could do): the
    /// mode is set on the file the agent created, so the victim's never changes.
    #[test]
    fn the_mode_is_set_through_the_descriptor_never_through_a_swapped_name() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "victim").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let path = dir.path().join("app.env");
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, dir, victim) = (stop.clone(), dir.path().to_owned(), victim.clone());
            std::thread::spawn(move || {
                let mut swaps = 0;
                while !stop.load(Ordering::Relaxed) {
                    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
                        let name = entry.file_name().to_string_lossy().into_owned();
                        if !name.starts_with(".app.env.rotor-")
                            || entry.file_type().is_ok_and(|t| t.is_symlink())
                        {
                            continue;
                        }
                        let stolen = dir.join(format!("stolen-{swaps}"));
                        if std::fs::rename(entry.path(), &stolen).is_ok() {
                            let _ = std::os::unix::fs::symlink(&victim, entry.path());
                            swaps += 1;
                        }
                    }
                }
                swaps
            })
        };
        for i in 0..400 {
            let _ = write_if_changed(&path, format!("A={i}\n").as_bytes(), 0o644, None);
            let mode = std::fs::metadata(&victim).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "write {i} changed the victim's mode");
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.file_type().is_symlink()) {
                std::fs::remove_file(&path).unwrap();
            }
        }
        stop.store(true, Ordering::Relaxed);
        let swaps = swapper.join().unwrap();
        println!("temporary files swapped: {swaps}");
        assert!(swaps > 0, "the swapper never caught a temporary file");
    }
}
