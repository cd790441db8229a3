//! Errors of the config store: each says what failed.

use std::error::Error;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::Version;

/// A boxed error from a validator.
pub type BoxError = Box<dyn Error + Send + Sync + 'static>;

/// A validator refused a configuration.
///
/// # Examples
/// ```
/// use unlocked::config::{ConfigStore, UpdateError};
///
/// let store = ConfigStore::builder(8080u16)
///     .validator(|port: &u16| if *port >= 1024 { Ok(()) } else { Err("port below 1024") })
///     .build()
///     .unwrap();
/// let err = store.update(|p| -> Result<(), ()> { *p = 80; Ok(()) }).unwrap_err();
/// let UpdateError::Invalid(invalid) = err else { panic!() };
/// assert_eq!(invalid.validator(), 0);
/// assert!(invalid.to_string().contains("port below 1024"));
/// ```
#[derive(Clone, Debug)]
pub struct ValidationError {
    validator: usize,
    /// Shared, so that the error (and a `BuildError` holding it) is `Clone`.
    source: Arc<dyn Error + Send + Sync + 'static>,
}

impl ValidationError {
    pub(crate) fn new(validator: usize, source: BoxError) -> Self {
        Self {
            validator,
            source: Arc::from(source),
        }
    }

    /// Which validator refused: its position in the order they were added,
    /// from 0.
    ///
    /// # Examples
    /// See [`ValidationError`].
    pub fn validator(&self) -> usize {
        self.validator
    }

    /// What the validator said.
    ///
    /// # Examples
    /// ```
    /// # use unlocked::config::{ConfigStore, UpdateError};
    /// let store = ConfigStore::builder(1).validator(|n: &i32| if *n > 0 { Ok(()) } else { Err("not positive") }).build().unwrap();
    /// let Err(UpdateError::Invalid(e)) = store.update(|n| -> Result<(), ()> { *n = 0; Ok(()) }) else { panic!() };
    /// assert_eq!(e.reason().to_string(), "not positive");
    /// ```
    pub fn reason(&self) -> &(dyn Error + Send + Sync + 'static) {
        &*self.source
    }
}

impl fmt::Display for ValidationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "validator #{} rejected the configuration: {}",
            self.validator, self.source
        )
    }
}

impl Error for ValidationError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(&*self.source)
    }
}

/// What a [`PersistError`] was doing.
///
/// # Examples
/// ```
/// use unlocked::config::PersistErrorKind;
/// assert_ne!(PersistErrorKind::Io, PersistErrorKind::Parse);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PersistErrorKind {
    /// Reading, writing, syncing or renaming a file failed.
    Io,
    /// The file's contents are not a valid configuration.
    Parse,
    /// The configuration could not be serialised, or its encoding would
    /// not read back (serde_json writes NaN and the infinities as `null`):
    /// nothing was written.
    Encode,
    /// The store has no file (it was not made with `open`).
    NotPersistent,
}

/// A file operation of the config store failed. Names the file and, for a
/// file that does not parse, the line, column and field.
///
/// # Examples
/// ```
/// use unlocked::config::{PersistError, PersistErrorKind};
///
/// fn explain(e: &PersistError) -> String {
///     match e.kind() {
///         PersistErrorKind::Parse => format!(
///             "fix {} at line {:?}, field {:?}",
///             e.path().display(),
///             e.line(),
///             e.field()
///         ),
///         _ => e.to_string(),
///     }
/// }
/// # let _ = explain;
/// ```
#[derive(Debug)]
pub struct PersistError {
    inner: Box<PersistInner>,
}

/// The contents of a [`PersistError`], boxed to keep `Result`s small.
#[derive(Debug)]
struct PersistInner {
    kind: PersistErrorKind,
    path: PathBuf,
    what: String,
    line: Option<usize>,
    column: Option<usize>,
    field: Option<String>,
    source: Option<BoxError>,
}

#[cfg_attr(not(feature = "persist"), allow(dead_code))]
impl PersistError {
    fn from(inner: PersistInner) -> Self {
        Self {
            inner: Box::new(inner),
        }
    }

    /// An I/O error while doing `what` on `path`.
    pub(crate) fn io(path: &Path, what: &str, err: io::Error) -> Self {
        Self::from(PersistInner {
            kind: PersistErrorKind::Io,
            path: path.to_owned(),
            what: what.to_owned(),
            line: None,
            column: None,
            field: None,
            source: Some(Box::new(err)),
        })
    }

    /// A parse error in `path`.
    pub(crate) fn parse(
        path: &Path,
        message: String,
        line: Option<usize>,
        column: Option<usize>,
        field: Option<String>,
    ) -> Self {
        Self::from(PersistInner {
            kind: PersistErrorKind::Parse,
            path: path.to_owned(),
            what: message,
            line,
            column,
            field,
            source: None,
        })
    }

    pub(crate) fn other(kind: PersistErrorKind, path: &Path, what: String) -> Self {
        Self::from(PersistInner {
            kind,
            path: path.to_owned(),
            what,
            line: None,
            column: None,
            field: None,
            source: None,
        })
    }

    /// What failed.
    ///
    /// # Examples
    /// See [`PersistError`].
    pub fn kind(&self) -> PersistErrorKind {
        self.inner.kind
    }

    /// The file concerned.
    ///
    /// # Examples
    /// See [`PersistError`].
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// For a parse error, the line (from 1) where it was found.
    ///
    /// # Examples
    /// See [`PersistError`].
    pub fn line(&self) -> Option<usize> {
        self.inner.line
    }

    /// For a parse error, the column (from 1) where it was found.
    ///
    /// # Examples
    /// See [`PersistError`].
    pub fn column(&self) -> Option<usize> {
        self.inner.column
    }

    /// For a parse error, the path of the field that failed, such as
    /// `config.limits.max`; for a missing field, the missing one
    /// (`config.port`). `None` when no field is known (an empty file, a
    /// syntax error before any field).
    ///
    /// # Examples
    /// See [`PersistError`].
    pub fn field(&self) -> Option<&str> {
        self.inner.field.as_deref()
    }
}

impl fmt::Display for PersistError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let e = &*self.inner;
        if e.path.as_os_str().is_empty() {
            f.write_str("(an empty path)")?;
        } else {
            write!(f, "{}", e.path.display())?;
        }
        if let Some(line) = e.line {
            write!(f, ":{line}")?;
            if let Some(column) = e.column {
                write!(f, ":{column}")?;
            }
        }
        match e.kind {
            PersistErrorKind::Parse => {
                f.write_str(": invalid configuration file")?;
                if let Some(field) = &e.field {
                    write!(f, ", field `{field}`")?;
                }
                write!(f, ": {}", e.what)
            }
            PersistErrorKind::Io => match &e.source {
                Some(source) => write!(f, ": could not {}: {source}", e.what),
                // No I/O error behind it: `what` is a whole sentence (a
                // link loop, a path that names no file; found in review:
                // "could not the path names no file").
                None => write!(f, ": {}", e.what),
            },
            PersistErrorKind::Encode | PersistErrorKind::NotPersistent => {
                write!(f, ": {}", e.what)
            }
        }
    }
}

impl Error for PersistError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn Error + 'static))
    }
}

/// Why an [`update`](super::ConfigStore::update) changed nothing. Memory
/// and file are as they were before the call.
///
/// It is `Display` when the closure's error `E` is, and an
/// [`Error`](std::error::Error) (with `E` as the source of `Rejected`) when
/// `E` is: give the closure an error type such as `String` or your own
/// error to pass an `UpdateError` up with `?` into a `Box<dyn Error>`. The
/// `()` and `&str` of the short examples are `Debug` only (`{:?}`).
///
/// # Examples
/// ```
/// use unlocked::config::{ConfigStore, UpdateError, Version};
///
/// let store = ConfigStore::new(0u32);
/// let err = store.update(|_| Err("no")).unwrap_err();
/// assert!(matches!(err, UpdateError::Rejected("no")));
///
/// store.update(|n| -> Result<(), ()> { *n += 1; Ok(()) }).unwrap();
/// let stale = Version::INITIAL;
/// let err = store.update_if(stale, |n| -> Result<(), ()> { *n += 1; Ok(()) }).unwrap_err();
/// assert!(matches!(err, UpdateError::Conflict { .. }));
/// assert_eq!(*store.load(), 1);
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum UpdateError<E> {
    /// The update closure returned this error.
    Rejected(E),
    /// A validator refused the new configuration.
    Invalid(ValidationError),
    /// Writing the new configuration to disk failed (or, for
    /// `reload` (feature `persist`), reading it).
    Persist(PersistError),
    /// [`update_if`](super::ConfigStore::update_if) expected another
    /// version: someone committed since.
    Conflict {
        /// The version the caller expected to be current.
        expected: Version,
        /// The version that is current.
        actual: Version,
    },
    /// The current version is `u64::MAX`: there is no next version number
    /// (possible only with a file that was written with that version).
    /// Nothing was changed.
    VersionsExhausted,
}

impl<E> UpdateError<E> {
    /// The closure's error, if that is what this is.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::new(0);
    /// let err = store.update(|_| Err(42)).unwrap_err();
    /// assert_eq!(err.into_rejected(), Some(42));
    /// ```
    pub fn into_rejected(self) -> Option<E> {
        match self {
            UpdateError::Rejected(e) => Some(e),
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for UpdateError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpdateError::Rejected(e) => write!(f, "the update closure refused: {e}"),
            UpdateError::Invalid(e) => write!(f, "the new configuration is invalid: {e}"),
            UpdateError::Persist(e) => write!(f, "the new configuration was not saved: {e}"),
            UpdateError::Conflict { expected, actual } => write!(
                f,
                "conflict: expected version {expected} but {actual} is current; \
                 load the latest configuration and retry"
            ),
            UpdateError::VersionsExhausted => f.write_str(
                "no version number is left after u64::MAX: nothing was changed; \
                 start from a file with a lower version",
            ),
        }
    }
}

impl<E: Error + 'static> Error for UpdateError<E> {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            UpdateError::Rejected(e) => Some(e),
            UpdateError::Invalid(e) => Some(e),
            UpdateError::Persist(e) => Some(e),
            UpdateError::Conflict { .. } | UpdateError::VersionsExhausted => None,
        }
    }
}

pub use crate::build_error::BuildError;

/// Why `ConfigStore::open` (feature `persist`) failed. The file is
/// left as it was.
///
/// # Examples
/// ```
/// # #[cfg(feature = "persist")] {
/// use unlocked::config::{ConfigStore, OpenError};
///
/// let dir = std::env::temp_dir().join(format!("unlocked-doc-open-error-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).unwrap();
/// let path = dir.join("app.json");
/// std::fs::write(&path, "{\"version\": 1, \"config\": {\"port\": \"eighty\"}}").unwrap();
///
/// #[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
/// struct App { port: u16 }
/// let err = ConfigStore::open(&path, App { port: 80 }).unwrap_err();
/// let OpenError::Persist(e) = &err else { panic!() };
/// assert_eq!((e.line(), e.field()), (Some(1), Some("config.port")));
/// # std::fs::remove_dir_all(&dir).unwrap();
/// # }
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum OpenError {
    /// The file could not be read, parsed or created.
    Persist(PersistError),
    /// The file parsed, but a validator refused its configuration.
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the validator said.
        error: ValidationError,
    },
    /// A bad builder setting.
    Build(BuildError),
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OpenError::Persist(e) => e.fmt(f),
            OpenError::Invalid { path, error } => write!(f, "{}: {error}", path.display()),
            OpenError::Build(e) => e.fmt(f),
        }
    }
}

impl Error for OpenError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            OpenError::Persist(e) => Some(e),
            OpenError::Invalid { error, .. } => Some(error),
            OpenError::Build(e) => Some(e),
        }
    }
}
