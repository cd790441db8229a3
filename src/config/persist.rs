//! Crash-safe persistence (feature `persist`).
//!
//! A commit writes `NAME.tmp.PID` in the file's own folder, `sync_all`s it,
//! hard-links the current `NAME` to `NAME.tmp.PID.bak` (if it still holds
//! what the store last wrote or read), renames the temp file over `NAME`,
//! then renames the link over `NAME.bak` (so the backup is always a whole
//! file, and changes only once the commit is in place), and `fsync`s the
//! folder, all before the version is published. A crash at any point
//! leaves `NAME` holding either the old or the new version: `rename`
//! replaces the directory entry atomically, and the folder sync makes the
//! rename durable.
//!
//! Temp names carry the process id, so processes never share one; within a
//! process, file writes (and the removal of stale temp files at open) take
//! [`FILE_WRITES`], so two stores on one file never write one temp file at
//! once (found in review: one truncated the other's half-written temp
//! file, whose rename then installed a torn file, or failed).
//!
//! The file holds `{"version": N, "config": ...}` (JSON), or `version = N`
//! and a `[config]` table (TOML, feature `toml`, selected by a `.toml`
//! extension), so a reopened store continues from `N`.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{
    validate_with, Committed, ConfigStore, ConfigStoreBuilder, OpenError, PersistError,
    PersistErrorKind, UpdateError, Version,
};
use crate::sync::lock;

/// The file's serialisation format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Format {
    Json,
    #[cfg(feature = "toml")]
    Toml,
}

/// What is written.
#[derive(Serialize)]
struct FileOut<'a, T> {
    version: u64,
    config: &'a T,
}

/// What is read.
#[derive(Deserialize)]
struct FileIn<T> {
    version: FileVersion,
    config: T,
}

/// A file's version: refused while it is read when it is 0, so that the
/// format's error names the line and column as for any other bad value
/// (found in review: a check after parsing had no position to give).
struct FileVersion(u64);

impl<'de> Deserialize<'de> for FileVersion {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// Refuses 0 inside the format's own parse of the number, where
        /// its error gets the number's position.
        struct AtLeastOne;
        impl serde::de::Visitor<'_> for AtLeastOne {
            type Value = FileVersion;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a version of at least 1")
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<FileVersion, E> {
                if n == 0 {
                    return Err(E::invalid_value(serde::de::Unexpected::Unsigned(0), &self));
                }
                Ok(FileVersion(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<FileVersion, E> {
                match u64::try_from(n) {
                    Ok(n) => self.visit_u64(n),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(n), &self)),
                }
            }
        }
        d.deserialize_u64(AtLeastOne)
    }
}

/// Held while a process writes, links or renames any store's files, and
/// while an open removes stale temp files: commits are rare and slow
/// (`fsync`), so one lock for every store costs nothing measurable, and
/// it covers a file reached by two different paths.
static FILE_WRITES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Takes [`FILE_WRITES`] (poisoning ignored: it guards no data, only the
/// temp names, and every path under it cleans up after itself).
fn file_writes() -> std::sync::MutexGuard<'static, ()> {
    FILE_WRITES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

type EncodeFn<T> = fn(&T, Version, Format) -> Result<Vec<u8>, String>;
type DecodeFn<T> = fn(&Path, &[u8], Format) -> Result<(Version, T), PersistError>;

/// The file side of a store: where, in what format, and how to (de)code `T`
/// (function pointers made where `T: Serialize + DeserializeOwned` is
/// known, so that the writer path needs no serde bounds).
pub(crate) struct Persister<T> {
    path: PathBuf,
    dir: PathBuf,
    name: OsString,
    format: Format,
    encode: EncodeFn<T>,
    decode: DecodeFn<T>,
    /// A digest of the bytes the file held when this store last wrote it
    /// or read and accepted it (`None`: no such file yet, as after a failed
    /// open that recovers). A commit makes the file the backup only if it
    /// still holds them, so neither a file damaged from outside (found in
    /// review: such garbage became `NAME.bak`) nor one a `reload` refused
    /// (even by a panic in `Deserialize` or a validator) replaces a good
    /// backup.
    known: Option<u64>,
}

/// A digest of a file's bytes (`DefaultHasher::new` is keyed the same in
/// every process run, which is all a comparison within one store needs).
fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Where `value` holds a NaN or an infinity (a path such as
/// `config.limits.burst`), which JSON cannot store: serde_json writes
/// `null`, which reads back as an error, or, inside an `Option`, as `None`
/// (found in review: an update to `Some(NaN)` was acknowledged and came
/// back as `None` after a reopen). Walks a `serde_value` copy of it, which
/// keeps floats as they are.
fn non_finite_at<T: Serialize>(value: &T) -> Option<String> {
    use serde_value::Value;
    fn walk(value: &Value, path: &mut String) -> bool {
        let len = path.len();
        let found = match value {
            Value::F32(f) => !f.is_finite(),
            Value::F64(f) => !f.is_finite(),
            Value::Option(Some(v)) | Value::Newtype(v) => walk(v, path),
            Value::Seq(items) => items.iter().enumerate().any(|(i, v)| {
                path.truncate(len);
                path.push_str(&format!("[{i}]"));
                walk(v, path)
            }),
            Value::Map(entries) => entries.iter().any(|(k, v)| {
                path.truncate(len);
                match k {
                    Value::String(k) => path.push_str(&format!(".{k}")),
                    _ => path.push_str(".(key)"),
                }
                walk(k, path) || walk(v, path)
            }),
            _ => false,
        };
        if !found {
            path.truncate(len);
        }
        found
    }
    let value = serde_value::to_value(value).ok()?;
    let mut path = String::from("config");
    walk(&value, &mut path).then_some(path)
}

fn encode<T: Serialize>(value: &T, version: Version, format: Format) -> Result<Vec<u8>, String> {
    let out = FileOut {
        version: version.get(),
        config: value,
    };
    if format == Format::Json {
        if let Some(at) = non_finite_at(value) {
            return Err(format!(
                "field `{at}` is NaN or infinite, which JSON cannot store \
                 (it would be written as null), so nothing was written"
            ));
        }
    }
    match format {
        Format::Json => serde_json::to_vec_pretty(&out)
            .map(|mut v| {
                v.push(b'\n');
                v
            })
            .map_err(|e| e.to_string()),
        // TOML integers are signed 64-bit: a version past `i64::MAX`
        // cannot be written (found in review: toml's own "out-of-range
        // value for u64 type" named neither the version nor the way out).
        #[cfg(feature = "toml")]
        Format::Toml if i64::try_from(version.get()).is_err() => Err(format!(
            "version {} is past the last one a TOML file can hold \
             ({}), so nothing was written; start from a file with a lower version",
            version.get(),
            i64::MAX
        )),
        #[cfg(feature = "toml")]
        Format::Toml => toml::to_string(&out)
            .map(String::into_bytes)
            .map_err(|e| e.to_string()),
    }
}

fn decode<T: DeserializeOwned>(
    path: &Path,
    bytes: &[u8],
    format: Format,
) -> Result<(Version, T), PersistError> {
    let file: FileIn<T> = match format {
        Format::Json => decode_json(path, bytes)?,
        #[cfg(feature = "toml")]
        Format::Toml => decode_toml(path, bytes)?,
    };
    Ok((Version::from(file.version.0), file.config))
}

fn decode_json<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<FileIn<T>, PersistError> {
    // A UTF-8 byte order mark, as some editors write, is not JSON to
    // serde_json but says nothing wrong about the file: skipped, as the
    // TOML reader does (found in review: refused with "expected value" at
    // 1:1, where the same file as TOML opened).
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let file = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let field = field_name(e.path(), &e.inner().to_string());
        json_error(path, e.into_inner(), field)
    })?;
    de.end().map_err(|e| json_error(path, e, None))?;
    Ok(file)
}

/// The field a decode error is in, as serde_path_to_error names it, less
/// the parts it could not name (`?`); `None` at the top level (an empty
/// file, a syntax error before any field). For a missing field the path
/// stops at the table that lacks it, so the field's own name, taken from
/// serde's "missing field `NAME`" message (`message`), is added: the error
/// names the field to write (found in review: `config.port` came out as
/// `config`, and a missing `version` as no field at all).
fn field_name(path: &serde_path_to_error::Path, message: &str) -> Option<String> {
    let full = path.to_string();
    let known = full.trim_end_matches(".?").trim_end_matches('?');
    let known = (!known.is_empty() && known != ".").then(|| known.to_owned());
    let missing = message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .filter(|name| !name.is_empty());
    match (known, missing) {
        (Some(known), Some(name)) => Some(format!("{known}.{name}")),
        (None, Some(name)) => Some(name.to_owned()),
        (known, None) => known,
    }
}

fn json_error(path: &Path, inner: serde_json::Error, field: Option<String>) -> PersistError {
    let (line, column) = (inner.line(), inner.column());
    // serde_json's message ends with " at line L column C": said apart.
    let message = inner.to_string();
    let message = match message.rfind(" at line ") {
        Some(cut) => message[..cut].to_owned(),
        None => message,
    };
    PersistError::parse(
        path,
        message,
        (line > 0).then_some(line),
        (column > 0).then_some(column),
        field,
    )
}

#[cfg(feature = "toml")]
fn decode_toml<T: DeserializeOwned>(path: &Path, bytes: &[u8]) -> Result<FileIn<T>, PersistError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let (line, column) = line_column(bytes, e.valid_up_to());
        PersistError::parse(path, e.to_string(), Some(line), Some(column), None)
    })?;
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let field = field_name(e.path(), e.inner().message());
        let inner = e.into_inner();
        let (line, column) = match inner.span() {
            Some(span) => {
                let (l, c) = line_column(bytes, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        PersistError::parse(path, inner.message().to_owned(), line, column, field)
    })
}

/// 1-based line and column of byte `offset`.
#[cfg(feature = "toml")]
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset.min(bytes.len())];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    (line, offset - start + 1)
}

/// `NAME` plus a suffix, in the same folder.
fn sibling(dir: &Path, name: &OsString, suffix: &str) -> PathBuf {
    let mut n = name.clone();
    n.push(suffix);
    dir.join(n)
}

/// `fs::rename`, for the commit's replacement of the file (a test can make
/// it fail).
fn rename_file(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(test)]
    if tests::FAIL_RENAME.with(std::cell::Cell::get) {
        return Err(io::Error::other("rename failed (injected by a test)"));
    }
    fs::rename(from, to)
}

fn sync_dir(dir: &Path) -> Result<(), PersistError> {
    #[cfg(test)]
    if tests::FAIL_DIR_SYNC.with(std::cell::Cell::get) {
        let e = io::Error::other("folder sync failed (injected by a test)");
        return Err(PersistError::io(dir, "sync the folder", e));
    }
    #[cfg(unix)]
    {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| PersistError::io(dir, "sync the folder", e))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Links followed at most when resolving the store's path (as `ELOOP`).
const MAX_LINKS: usize = 40;

/// `path` with every symbolic link at its end followed, so that commits
/// replace the file the link points at and the link stays a link: a
/// configuration reached through a link (a deployment's shared file, a
/// Kubernetes `ConfigMap` mount, a dotfile manager's) is updated where it
/// lives instead of being replaced by a copy that nothing else reads. A
/// dangling link resolves to where it points, so the file is created
/// there.
fn resolve_links(path: &Path) -> Result<PathBuf, PersistError> {
    let mut resolved = path.to_owned();
    for _ in 0..MAX_LINKS {
        match fs::symlink_metadata(&resolved) {
            Ok(meta) if meta.file_type().is_symlink() => {
                let target = fs::read_link(&resolved)
                    .map_err(|e| PersistError::io(&resolved, "follow the link", e))?;
                resolved = match resolved.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            _ => return Ok(resolved),
        }
    }
    Err(PersistError::other(
        PersistErrorKind::Io,
        path,
        format!("more than {MAX_LINKS} symbolic links to follow (a loop?)"),
    ))
}

impl<T> Persister<T> {
    fn new<U: Serialize + DeserializeOwned>(path: &Path) -> Result<Persister<U>, PersistError> {
        // The format is the one the caller named (`app.toml` may link to a
        // file with another name); the file written is the link's target.
        let format = match path.extension().and_then(|e| e.to_str()) {
            #[cfg(feature = "toml")]
            Some("toml") => Format::Toml,
            #[cfg(not(feature = "toml"))]
            Some("toml") => {
                return Err(PersistError::other(
                    PersistErrorKind::Io,
                    path,
                    "TOML files need the `toml` feature of `unlocked`".into(),
                ))
            }
            _ => Format::Json,
        };
        let path = &resolve_links(path)?;
        let name = path.file_name().map(OsString::from).ok_or_else(|| {
            PersistError::other(PersistErrorKind::Io, path, "the path names no file".into())
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        Ok(Persister {
            path: path.to_owned(),
            dir,
            name,
            format,
            encode: encode::<U>,
            decode: decode::<U>,
            known: None,
        })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    fn backup_path(&self) -> PathBuf {
        sibling(&self.dir, &self.name, ".bak")
    }

    fn temp_path(&self) -> PathBuf {
        sibling(
            &self.dir,
            &self.name,
            &format!(".tmp.{}", std::process::id()),
        )
    }

    /// Removes temp files a crashed writer left: `NAME.tmp.PID`,
    /// `NAME.tmp.PID.bak` and (from earlier versions) `NAME.tmp.bak`, with
    /// digits only for `PID`; nothing else (`NAME.tmpl` is the user's).
    fn remove_stale_temps(&self) -> Result<(), PersistError> {
        // Another store of this process may be writing its temp file.
        let _writes = file_writes();
        let mut prefix = self.name.clone();
        prefix.push(".tmp.");
        let prefix = prefix.to_string_lossy().into_owned();
        let entries = fs::read_dir(&self.dir)
            .map_err(|e| PersistError::io(&self.dir, "list the folder", e))?;
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(suffix) = name.strip_prefix(&prefix) else {
                continue;
            };
            let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
            let ours = suffix == "bak"
                || digits(suffix)
                || suffix.strip_suffix(".bak").is_some_and(digits);
            if ours {
                let p = entry.path();
                fs::remove_file(&p)
                    .map_err(|e| PersistError::io(&p, "remove a stale temp file", e))?;
            }
        }
        Ok(())
    }

    /// The version and value in the file at `path`, and the digest of its
    /// bytes.
    fn read(&self, path: &Path) -> Result<(Version, T, u64), PersistError> {
        let bytes = fs::read(path).map_err(|e| PersistError::io(path, "read the file", e))?;
        let (version, value) = (self.decode)(path, &bytes, self.format)?;
        Ok((version, value, digest(&bytes)))
    }

    /// Writes `value` as `version`, crash-safely (see the module docs).
    /// `previous` is the version memory keeps if this write fails (`None`
    /// when there is none yet): see [`put_back`](Self::put_back). The
    /// value read back from the encoded bytes is left in `read_back`, for
    /// the caller to drop once it has released its locks: its `T::drop` is
    /// user code, which may call the store (found in review: dropped here,
    /// under the writer lock, such a drop deadlocked every commit).
    pub(crate) fn write(
        &mut self,
        value: &T,
        version: Version,
        previous: Option<(&T, Version)>,
        read_back: &mut Option<T>,
    ) -> Result<(), PersistError> {
        let bytes = (self.encode)(value, version, self.format)
            .map_err(|e| PersistError::other(PersistErrorKind::Encode, &self.path, e))?;
        // A value the format cannot read back (serde_json writes NaN and
        // the infinities as `null`) must not be acknowledged: the next
        // open would refuse the file (found in review).
        let (_, decoded) = (self.decode)(&self.path, &bytes, self.format).map_err(|e| {
            PersistError::other(
                PersistErrorKind::Encode,
                &self.path,
                format!(
                    "the encoded configuration would not read back \
                     (NaN or an infinity in JSON?), so nothing was written: {e}"
                ),
            )
        })?;
        *read_back = Some(decoded);
        let temp = self.temp_path();
        let _writes = file_writes();
        let result = self.replace_with(&temp, &bytes, previous);
        if result.is_err() {
            let _ = fs::remove_file(&temp);
        }
        result
    }

    fn replace_with(
        &mut self,
        temp: &Path,
        bytes: &[u8],
        previous: Option<(&T, Version)>,
    ) -> Result<(), PersistError> {
        let mut file = File::create(temp).map_err(|e| PersistError::io(temp, "create", e))?;
        // The new file keeps the old one's permissions (a file only its
        // owner may read stays so): the temp file was created with the
        // default ones (found in review: 0600 became 0644).
        if let Ok(meta) = fs::metadata(&self.path) {
            file.set_permissions(meta.permissions())
                .map_err(|e| PersistError::io(temp, "set the permissions of", e))?;
        }
        file.write_all(bytes)
            .map_err(|e| PersistError::io(temp, "write", e))?;
        file.sync_all()
            .map_err(|e| PersistError::io(temp, "sync", e))?;
        drop(file);
        // The backup is linked first but renamed over `NAME.bak` only once
        // the new file is in place: a commit that fails before that leaves
        // the old backup as it was (found in review: a failed rename had
        // already replaced it).
        let link = if self.file_is_known() {
            Some(self.link_backup()?)
        } else {
            None
        };
        if let Err(e) = rename_file(temp, &self.path) {
            if let Some(link) = &link {
                let _ = fs::remove_file(link);
            }
            return Err(PersistError::io(&self.path, "replace the file", e));
        }
        if let Some(link) = &link {
            let backup = self.backup_path();
            if let Err(e) = fs::rename(link, &backup) {
                // The new file is in place but its predecessor could not
                // be kept: put the predecessor back (the link holds it) and
                // refuse the commit, which then changed nothing.
                if fs::rename(link, &self.path).is_ok() {
                    let _ = sync_dir(&self.dir);
                } else {
                    let _ = fs::remove_file(link);
                }
                return Err(PersistError::io(&backup, "keep the backup", e));
            }
        }
        if let Err(e) = sync_dir(&self.dir) {
            // The caller reports the commit as failed and keeps the old
            // version in memory: put the old file back so that the file
            // agrees (best effort: the folder is failing), rather than
            // leave the refused version to be numbered again by the next
            // commit (found in review).
            self.put_back(link.is_some(), previous);
            return Err(e);
        }
        self.known = Some(digest(bytes));
        Ok(())
    }

    /// Whether the file still holds what this store last wrote or read (a
    /// missing file, or one changed from outside since, does not).
    fn file_is_known(&self) -> bool {
        self.known
            .is_some_and(|known| fs::read(&self.path).is_ok_and(|b| digest(&b) == known))
    }

    /// After a refused write whose rename went through: makes the file say
    /// what memory keeps again. The backup just taken is copied back when
    /// there is one (its bytes, as the user may have formatted them);
    /// otherwise (the file was missing or bad before) `previous` is written
    /// out. Errors are ignored: the caller reports the first one.
    fn put_back(&self, backed_up: bool, previous: Option<(&T, Version)>) {
        if backed_up {
            self.restore_backup();
            return;
        }
        let Some((value, version)) = previous else {
            return;
        };
        let Ok(bytes) = (self.encode)(value, version, self.format) else {
            return;
        };
        let temp = self.temp_path();
        let written = File::create(&temp)
            .and_then(|mut f| {
                f.write_all(&bytes)?;
                f.sync_all()
            })
            .is_ok();
        self.install_or_discard(&temp, written);
    }

    /// Puts the backup's contents back as the file, atomically (a synced
    /// copy renamed over it: a copy, not a hard link, so that an edit of
    /// the file in place cannot change the backup; found in review);
    /// errors are ignored.
    fn restore_backup(&self) {
        let temp = self.temp_path();
        let copied = fs::copy(self.backup_path(), &temp)
            .and_then(|_| File::open(&temp)?.sync_all())
            .is_ok();
        self.install_or_discard(&temp, copied);
    }

    /// Best effort, errors ignored: renames the synced `temp` over the file
    /// and syncs the folder when it was `prepared`, else (or if the rename
    /// fails) removes `temp`.
    fn install_or_discard(&self, temp: &Path, prepared: bool) {
        if prepared && fs::rename(temp, &self.path).is_ok() {
            let _ = sync_dir(&self.dir);
        } else {
            let _ = fs::remove_file(temp);
        }
    }

    /// Links (or copies) the current file to `NAME.tmp.PID.bak`, the
    /// backup to be: renamed over `NAME.bak` once the commit is in place.
    fn link_backup(&self) -> Result<PathBuf, PersistError> {
        let link = sibling(
            &self.dir,
            &self.name,
            &format!(".tmp.{}.bak", std::process::id()),
        );
        let _ = fs::remove_file(&link);
        if fs::hard_link(&self.path, &link).is_err() {
            // No hard links here: a synced copy does the same, slower.
            fs::copy(&self.path, &link)
                .and_then(|_| File::open(&link)?.sync_all())
                .map_err(|e| {
                    let _ = fs::remove_file(&link);
                    PersistError::io(&link, "copy the backup", e)
                })?;
        }
        Ok(link)
    }
}

/// Whether `open_or_recover` falls back to the backup for this error of
/// the main file: its contents are bad (they do not parse, or a validator
/// refuses them). An I/O error (permission denied, a device error, a
/// directory at the path) says nothing about the contents and may pass:
/// falling back would replace a file that may be good with the older
/// backup, so it is returned instead, as `open` returns it.
fn is_bad_contents(error: &OpenError) -> bool {
    match error {
        OpenError::Invalid { .. } => true,
        OpenError::Persist(e) => e.kind() == PersistErrorKind::Parse,
        OpenError::Build(_) => false,
    }
}

impl<T: Clone + Send + Sync + 'static> ConfigStoreBuilder<T> {
    /// Opens (or creates from this builder's initial value) the file at
    /// `path`; see [`ConfigStore::open`].
    ///
    /// # Errors
    /// As [`ConfigStore::open`]; [`OpenError::Build`] for a bad setting.
    ///
    /// # Panics
    /// A validator that panics: the panic propagates to the caller, and
    /// the configuration file is neither created nor changed.
    ///
    /// # Examples
    /// ```
    /// use unlocked::config::ConfigStore;
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = ConfigStore::builder(5u32)
    ///     .validator(|n: &u32| if *n < 10 { Ok(()) } else { Err("too big") })
    ///     .open(dir.path().join("n.json"))
    ///     .unwrap();
    /// assert!(store.update(|n| -> Result<(), ()> { *n = 50; Ok(()) }).is_err());
    /// ```
    pub fn open(self, path: impl AsRef<Path>) -> Result<ConfigStore<T>, OpenError>
    where
        T: Serialize + DeserializeOwned,
    {
        self.open_inner(path.as_ref(), false)
            .map(|(store, _)| store)
    }

    /// Like [`open`](Self::open), but a corrupt or invalid file falls back
    /// to the backup; see [`ConfigStore::open_or_recover`].
    ///
    /// # Errors
    /// As [`ConfigStore::open_or_recover`].
    ///
    /// # Panics
    /// A validator that panics: the panic propagates to the caller, and
    /// the configuration file is neither created nor changed.
    ///
    /// # Examples
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let (store, recovered) = unlocked::config::ConfigStore::builder(1u8)
    ///     .open_or_recover(dir.path().join("n.json"))
    ///     .unwrap();
    /// assert!(recovered.is_none());
    /// assert_eq!(*store.load(), 1);
    /// ```
    pub fn open_or_recover(
        self,
        path: impl AsRef<Path>,
    ) -> Result<(ConfigStore<T>, Option<OpenError>), OpenError>
    where
        T: Serialize + DeserializeOwned,
    {
        self.open_inner(path.as_ref(), true)
    }

    fn open_inner(
        self,
        path: &Path,
        recover: bool,
    ) -> Result<(ConfigStore<T>, Option<OpenError>), OpenError>
    where
        T: Serialize + DeserializeOwned,
    {
        self.check().map_err(OpenError::Build)?;
        let mut persister = Persister::<T>::new::<T>(path).map_err(OpenError::Persist)?;
        persister.remove_stale_temps().map_err(OpenError::Persist)?;
        let (current, recovered) = match self.load_file(&persister, path) {
            Ok(Some((version, value, known))) => {
                persister.known = Some(known);
                ((version, value), None)
            }
            // A missing file whose backup is good: `open_or_recover` takes
            // the backup, where creating the default would have let the
            // first commit replace that good backup with it (found in
            // review). With no good backup, the default as before.
            Ok(None) if recover && persister.backup_path().exists() => {
                let missing = OpenError::Persist(PersistError::io(
                    path,
                    "read",
                    io::Error::from(io::ErrorKind::NotFound),
                ));
                match self.recover(&mut persister, missing) {
                    Ok((found, why)) => (found, Some(why)),
                    Err(_) => (self.create(&mut persister, path)?, None),
                }
            }
            Ok(None) => (self.create(&mut persister, path)?, None),
            Err(error) if recover && is_bad_contents(&error) => {
                let found = self.recover(&mut persister, error)?;
                (found.0, Some(found.1))
            }
            Err(error) => return Err(error),
        };
        let committed = Arc::new(Committed::new(current.0, current.1));
        let store = ConfigStore::from_parts(committed, self.validators, self.history);
        lock(&store.shared.writer).persister = Some(persister);
        Ok((store, recovered))
    }

    /// Writes the initial value as version 1 of a missing file.
    fn create(&self, persister: &mut Persister<T>, path: &Path) -> Result<(Version, T), OpenError>
    where
        T: Serialize + DeserializeOwned,
    {
        validate_with(&self.validators, &self.initial).map_err(|error| OpenError::Invalid {
            path: path.to_owned(),
            error,
        })?;
        persister
            .write(&self.initial, Version::INITIAL, None, &mut None)
            .map_err(OpenError::Persist)?;
        Ok((Version::INITIAL, self.initial.clone()))
    }

    /// The file's version and value, validated, and the digest of its
    /// bytes; `None` when it is missing.
    fn load_file(
        &self,
        persister: &Persister<T>,
        path: &Path,
    ) -> Result<Option<(Version, T, u64)>, OpenError> {
        match fs::metadata(path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(OpenError::Persist(PersistError::io(path, "read", e))),
            Ok(_) => {}
        }
        let (version, value, known) = persister.read(path).map_err(OpenError::Persist)?;
        validate_with(&self.validators, &value).map_err(|error| OpenError::Invalid {
            path: path.to_owned(),
            error,
        })?;
        Ok(Some((version, value, known)))
    }

    /// The main file is bad: take the backup, set the bad file aside as
    /// `NAME.corrupt`, and write the backup's contents as the main file.
    fn recover(
        &self,
        persister: &mut Persister<T>,
        error: OpenError,
    ) -> Result<((Version, T), OpenError), OpenError> {
        let backup = persister.backup_path();
        let Ok(Some((version, value, _))) = self.load_file(persister, &backup) else {
            return Err(error);
        };
        // The bad file is copied aside, not moved: the file must exist at
        // every moment, or a crash here would leave only the backup, which
        // the next open would ignore and the next commit overwrite (found
        // in review). The backup's contents then replace it by the usual
        // atomic rename, which leaves the backup as it is.
        // (A missing file has nothing to set aside.)
        if persister.path.exists() {
            let aside = sibling(&persister.dir, &persister.name, ".corrupt");
            let _ = fs::remove_file(&aside);
            fs::hard_link(&persister.path, &aside)
                .or_else(|_| fs::copy(&persister.path, &aside).map(|_| ()))
                .map_err(|e| {
                    OpenError::Persist(PersistError::io(&aside, "set the bad file aside", e))
                })?;
        }
        persister
            .write(&value, version, None, &mut None)
            .map_err(OpenError::Persist)?;
        Ok(((version, value), error))
    }
}

impl<T: Clone + Send + Sync + 'static> ConfigStore<T> {
    /// Opens the configuration file at `path`, or creates it from `default`
    /// (as version 1) when it is missing. Every later commit is written to
    /// it crash-safely before readers see it (see `docs/config.md`), and
    /// the previous file is kept as `NAME.bak`. Stale temp files from a
    /// crashed writer are removed. A symbolic link is followed: commits
    /// write the file it points at, and the link stays. JSON, or TOML for a `.toml` path with
    /// feature `toml`.
    ///
    /// # Errors
    /// [`OpenError::Persist`] when the file cannot be read or does not
    /// parse (naming the file, line, column and field), and
    /// [`OpenError::Invalid`] when a validator refuses it. The file is left
    /// untouched. When the file is missing and `default` cannot be written
    /// so that it reads back (NaN or an infinity in JSON),
    /// [`OpenError::Persist`] of kind
    /// [`Encode`](crate::config::PersistErrorKind::Encode), and no file is
    /// created.
    ///
    /// # Panics
    /// A validator that panics: the panic propagates to the caller, and
    /// the configuration file is neither created nor changed.
    ///
    /// # Examples
    /// ```
    /// use unlocked::config::ConfigStore;
    ///
    /// #[derive(Clone, serde::Serialize, serde::Deserialize)]
    /// struct App { greeting: String }
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("app.json");
    /// let store = ConfigStore::open(&path, App { greeting: "hi".into() }).unwrap();
    /// store.update(|a| -> Result<(), ()> { a.greeting = "hello".into(); Ok(()) }).unwrap();
    /// drop(store);
    ///
    /// let again = ConfigStore::open(&path, App { greeting: "unused".into() }).unwrap();
    /// assert_eq!(again.load().greeting, "hello");
    /// assert_eq!(again.load().version().get(), 2);
    /// ```
    pub fn open(path: impl AsRef<Path>, default: T) -> Result<Self, OpenError>
    where
        T: Serialize + DeserializeOwned,
    {
        Self::builder(default).open(path)
    }

    /// Like [`open`](Self::open), but when the file is corrupt or invalid,
    /// or missing while a good backup exists, falls back to the backup
    /// `NAME.bak`: a bad file is set aside as `NAME.corrupt` and the
    /// backup's contents become the file. Returns the error that made it
    /// fall back, if any.
    ///
    /// # Errors
    /// The file's error when the backup is missing or bad too. An I/O
    /// error reading the file (permission denied, a device error) is
    /// returned as [`open`](Self::open) returns it, with no fallback: it
    /// says nothing about the file's contents, and falling back would
    /// replace a file that may be good with the older backup.
    ///
    /// # Panics
    /// A validator that panics: the panic propagates to the caller, and
    /// the configuration file is neither created nor changed.
    ///
    /// # Examples
    /// ```
    /// use unlocked::config::ConfigStore;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("n.json");
    /// let store = ConfigStore::open(&path, 1u32).unwrap();
    /// store.update(|n| -> Result<(), ()> { *n = 2; Ok(()) }).unwrap();
    /// drop(store);
    /// std::fs::write(&path, "{ not json").unwrap();
    ///
    /// let (store, why) = ConfigStore::open_or_recover(&path, 0u32).unwrap();
    /// assert!(why.is_some());
    /// assert_eq!(*store.load(), 1); // the backup: the version before the last
    /// ```
    pub fn open_or_recover(
        path: impl AsRef<Path>,
        default: T,
    ) -> Result<(Self, Option<OpenError>), OpenError>
    where
        T: Serialize + DeserializeOwned,
    {
        Self::builder(default).open_or_recover(path)
    }

    /// Rereads the file after an outside edit: the validators check it
    /// first, and only a valid file is committed, as the next version (the
    /// file is rewritten with that version). An invalid file changes
    /// nothing in memory and is left as it is.
    ///
    /// # Errors
    /// [`UpdateError::Persist`] when the file cannot be read or parsed, or
    /// when the store has no file; [`UpdateError::Invalid`] when a
    /// validator refuses it.
    ///
    /// # Examples
    /// ```
    /// use unlocked::config::ConfigStore;
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("n.json");
    /// let store = ConfigStore::open(&path, 1u32).unwrap();
    /// std::fs::write(&path, r#"{"version": 1, "config": 7}"#).unwrap();
    /// let v = store.reload().unwrap();
    /// assert_eq!((*store.load(), v.get()), (7, 2));
    ///
    /// std::fs::write(&path, r#"{"version": 1, "config": "seven"}"#).unwrap();
    /// assert!(store.reload().is_err());
    /// assert_eq!(*store.load(), 7);
    /// ```
    pub fn reload(&self) -> Result<Version, UpdateError<std::convert::Infallible>> {
        // Before the lock, so dropped after it (see `commit`).
        let mut value_slot: Option<T> = None;
        let mut read_back: Option<T> = None;
        let mut writer = lock(&self.shared.writer);
        let Some(persister) = writer.persister.as_mut() else {
            return Err(UpdateError::Persist(PersistError::other(
                PersistErrorKind::NotPersistent,
                Path::new("(no file)"),
                "this store has no file to reload: make it with `ConfigStore::open`".into(),
            )));
        };
        let path = persister.path().to_owned();
        // `known` changes only once the file is read and validated: one a
        // `Deserialize` impl or a validator refused, or panicked on, never
        // becomes the backup at the next commit.
        let (_, value, known) = persister.read(&path).map_err(UpdateError::Persist)?;
        let value = value_slot.insert(value);
        if let Err(e) = self.shared.validate(value) {
            return Err(UpdateError::Invalid(e));
        }
        // The outside edit, now accepted, is what the next backup keeps.
        persister.known = Some(known);
        let version = writer
            .current
            .version()
            .next()
            .ok_or(UpdateError::VersionsExhausted)?;
        let current = Arc::clone(&writer.current);
        let persister = writer.persister.as_mut().expect("checked above");
        persister
            .write(
                value,
                version,
                Some((current.value(), current.version())),
                &mut read_back,
            )
            .map_err(UpdateError::Persist)?;
        let value = value_slot.take().expect("inserted above");
        let committed = Arc::new(Committed::new(version, value));
        let (callbacks, evicted) = self.shared.publish(&mut writer, Arc::clone(&committed));
        drop(writer);
        self.shared.notify(committed, callbacks);
        drop(evicted);
        Ok(version)
    }
}

#[cfg(test)]
pub(super) mod tests {
    use std::cell::Cell;
    use std::fs;

    use crate::config::{ConfigStore, UpdateError};

    thread_local! {
        /// Makes `sync_dir` fail on this thread (fault injection).
        pub(crate) static FAIL_DIR_SYNC: Cell<bool> = const { Cell::new(false) };
        /// Makes the commit's rename over the file fail on this thread.
        pub(crate) static FAIL_RENAME: Cell<bool> = const { Cell::new(false) };
    }

    /// A commit whose rename over the file fails changes nothing: not the
    /// file, not memory, and not the backup (found in review: the backup
    /// was taken before the rename, so a failed commit replaced it).
    #[test]
    fn a_failed_rename_leaves_the_backup_as_it_was() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.json");
        let backup = dir.path().join("n.json.bak");
        let store = ConfigStore::open(&path, 1u32).unwrap();
        set(&store, 2).unwrap();
        set(&store, 3).unwrap();
        let (file, bak) = (fs::read(&path).unwrap(), fs::read(&backup).unwrap());
        FAIL_RENAME.with(|f| f.set(true));
        let result = set(&store, 4);
        FAIL_RENAME.with(|f| f.set(false));
        assert!(matches!(result, Err(UpdateError::Persist(_))), "{result:?}");
        assert_eq!(*store.load(), 3);
        assert_eq!(fs::read(&path).unwrap(), file);
        assert_eq!(fs::read(&backup).unwrap(), bak, "the backup changed");
        let mut names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["n.json", "n.json.bak"]);
        assert_eq!(set(&store, 5).unwrap(), 4);
    }

    /// Commits `n` to `store`.
    fn set(store: &ConfigStore<u32>, n: u32) -> Result<u64, UpdateError<()>> {
        store
            .update(|v: &mut u32| -> Result<(), ()> {
                *v = n;
                Ok(())
            })
            .map(u64::from)
    }

    /// Commits `n` with the folder sync failing (fault injection).
    fn set_with_failing_sync(store: &ConfigStore<u32>, n: u32) -> UpdateError<()> {
        FAIL_DIR_SYNC.with(|f| f.set(true));
        let result = set(store, n);
        FAIL_DIR_SYNC.with(|f| f.set(false));
        result.expect_err("the folder sync failed")
    }

    /// A commit whose folder sync fails after the rename is reported as
    /// failed and leaves the old file in place, so the file and memory
    /// agree and the next commit's version is not taken twice.
    #[test]
    fn a_failed_folder_sync_puts_the_old_file_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.json");
        let store = ConfigStore::open(&path, 1u32).unwrap();
        set(&store, 2).unwrap();
        let before = fs::read_to_string(&path).unwrap();
        let err = set_with_failing_sync(&store, 3);
        assert!(matches!(err, UpdateError::Persist(_)), "{err:?}");
        assert_eq!(*store.load(), 2);
        assert_eq!(fs::read_to_string(&path).unwrap(), before);
        assert_eq!(set(&store, 4).unwrap(), 3);
        drop(store);
        let again = ConfigStore::open(&path, 0u32).unwrap();
        assert_eq!((*again.load(), again.load().version().get()), (4, 3));
    }

    /// With no backup to copy back (a reload found the file broken, so
    /// the commit after it keeps none), a failed folder sync writes the
    /// version memory keeps: the refused one never stays on disk.
    #[test]
    fn a_failed_folder_sync_without_a_backup_writes_the_kept_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.json");
        let store = ConfigStore::open(&path, 1u32).unwrap();
        set(&store, 2).unwrap();
        fs::write(&path, "{ broken").unwrap();
        assert!(store.reload().is_err());
        let err = set_with_failing_sync(&store, 3);
        assert!(matches!(err, UpdateError::Persist(_)), "{err:?}");
        assert_eq!(*store.load(), 2);
        drop(store);
        let again = ConfigStore::open(&path, 0u32).unwrap();
        assert_eq!((*again.load(), again.load().version().get()), (2, 2));
    }

    /// Recovery copies the bad file aside and replaces it atomically: the
    /// file exists at every step, and the backup survives.
    #[test]
    fn recovery_keeps_the_file_in_place_and_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.json");
        let store = ConfigStore::open(&path, 1u32).unwrap();
        set(&store, 2).unwrap();
        drop(store);
        fs::write(&path, "{ broken").unwrap();
        let backup = fs::read_to_string(dir.path().join("n.json.bak")).unwrap();
        let (store, why) = ConfigStore::open_or_recover(&path, 0u32).unwrap();
        assert!(why.is_some());
        assert_eq!(*store.load(), 1);
        assert_eq!(
            fs::read_to_string(dir.path().join("n.json.corrupt")).unwrap(),
            "{ broken"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("n.json.bak")).unwrap(),
            backup
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), backup);
    }

    /// The file put back after a failed folder sync is a copy of the
    /// backup, not a second link to it: editing the file in place leaves
    /// the backup intact, so a broken edit can still be recovered (found in
    /// review).
    #[test]
    fn a_restored_file_does_not_share_the_backup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n.json");
        let store = ConfigStore::open(&path, 1u32).unwrap();
        set(&store, 2).unwrap();
        set(&store, 3).unwrap();
        set_with_failing_sync(&store, 4);
        drop(store);
        let backup = dir.path().join("n.json.bak");
        let before = fs::read_to_string(&backup).unwrap();
        fs::write(&path, "{ broken").unwrap();
        assert_eq!(fs::read_to_string(&backup).unwrap(), before);
        let (store, why) = ConfigStore::open_or_recover(&path, 0u32).unwrap();
        assert!(why.is_some());
        assert_eq!(*store.load(), 3);
    }
}
