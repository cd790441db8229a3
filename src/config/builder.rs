//! [`ConfigStoreBuilder`]: validators and settings before the store exists.

use std::fmt;
use std::sync::Arc;

use super::{
    validate_with, BoxError, BuildError, Committed, ConfigStore, Validator, Version,
    DEFAULT_HISTORY,
};

/// Builds a [`ConfigStore`]: from [`ConfigStore::builder`].
///
/// # Examples
/// ```
/// use unlocked::config::ConfigStore;
///
/// #[derive(Clone)]
/// struct Server { port: u16, workers: usize }
///
/// let store = ConfigStore::builder(Server { port: 8080, workers: 4 })
///     .validator(|s: &Server| if s.port != 0 { Ok(()) } else { Err("port 0") })
///     .validator(|s: &Server| if s.workers > 0 { Ok(()) } else { Err("no workers") })
///     .build()
///     .unwrap();
/// assert_eq!(store.load().workers, 4);
/// ```
#[must_use]
pub struct ConfigStoreBuilder<T> {
    pub(super) initial: T,
    pub(super) validators: Vec<Validator<T>>,
    pub(super) history: usize,
}

impl<T: Clone + Send + Sync + 'static> ConfigStoreBuilder<T> {
    pub(super) fn new(initial: T) -> Self {
        Self {
            initial,
            validators: Vec::new(),
            history: DEFAULT_HISTORY,
        }
    }

    /// Adds a validator: every new configuration (and the initial one, and
    /// one read from disk) must pass all of them, in the order added.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::builder(1)
    ///     .validator(|n: &i32| if *n > 0 { Ok(()) } else { Err(format!("{n} is not positive")) })
    ///     .build()
    ///     .unwrap();
    /// let err = store.update(|n| -> Result<(), &str> { *n = -1; Ok(()) }).unwrap_err();
    /// assert!(err.to_string().contains("-1 is not positive"));
    /// ```
    pub fn validator<F, E>(mut self, validator: F) -> Self
    where
        F: Fn(&T) -> Result<(), E> + Send + Sync + 'static,
        E: Into<BoxError>,
    {
        self.validators.push(Box::new(move |value: &T| {
            validator(value).map_err(Into::into)
        }));
        self
    }

    /// How many versions [`ConfigStore::history`] keeps (default 16, at
    /// least 1).
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::builder(0).history(2).build().unwrap();
    /// for i in 1..5 {
    ///     store.update(|n| -> Result<(), ()> { *n = i; Ok(()) }).unwrap();
    /// }
    /// assert_eq!(store.history(10).len(), 2);
    /// ```
    pub fn history(mut self, versions: usize) -> Self {
        self.history = versions;
        self
    }

    pub(super) fn check(&self) -> Result<(), BuildError> {
        if self.history == 0 {
            return Err(BuildError::ZeroHistory);
        }
        Ok(())
    }

    /// The store, with the initial value as version 1.
    ///
    /// # Errors
    /// [`BuildError::ZeroHistory`] for `history(0)`;
    /// [`BuildError::InvalidInitial`] when a validator refuses the initial
    /// value.
    ///
    /// # Panics
    /// A validator that panics: the panic propagates to the caller, and
    /// no store is built.
    ///
    /// # Examples
    /// ```
    /// let store = unlocked::config::ConfigStore::builder("a").build().unwrap();
    /// assert_eq!(*store.load(), "a");
    /// ```
    pub fn build(self) -> Result<ConfigStore<T>, BuildError> {
        self.check()?;
        validate_with(&self.validators, &self.initial).map_err(BuildError::InvalidInitial)?;
        let current = Arc::new(Committed::new(Version::INITIAL, self.initial));
        Ok(ConfigStore::from_parts(
            current,
            self.validators,
            self.history,
        ))
    }
}

impl<T: fmt::Debug> fmt::Debug for ConfigStoreBuilder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConfigStoreBuilder")
            .field("initial", &self.initial)
            .field("validators", &self.validators.len())
            .field("history", &self.history)
            .finish()
    }
}
