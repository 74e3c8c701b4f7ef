//! Errors: what a guarded call returns, and what a storage reports.

use crate::name::CircuitName;
use alloc::borrow::Cow;
use core::convert::Infallible;
use core::fmt;
use core::time::Duration;

/// What went wrong with a storage operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The store could not be reached (refused, disconnected, pool empty).
    Unavailable,
    /// The store did not answer in time.
    TimedOut,
    /// The store answered with something that is not what the breaker
    /// wrote: text in a counter, a key of the wrong type, a negative count.
    Corrupt,
    /// Anything else.
    Other,
}

impl fmt::Display for StorageErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unavailable => "storage unavailable",
            Self::TimedOut => "storage timed out",
            Self::Corrupt => "corrupt value in storage",
            Self::Other => "storage error",
        })
    }
}

/// An error from a storage: a [`StorageErrorKind`], a message, and (with
/// `std`) the underlying error as its `source()`.
///
/// One pointer wide, so that results carrying it stay small on the hot path.
pub struct StorageError {
    inner: alloc::boxed::Box<StorageErrorInner>,
}

struct StorageErrorInner {
    kind: StorageErrorKind,
    message: Cow<'static, str>,
    #[cfg(feature = "std")]
    source: Option<alloc::boxed::Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl StorageError {
    /// An error of `kind` that says `message`.
    pub fn new(kind: StorageErrorKind, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            inner: alloc::boxed::Box::new(StorageErrorInner {
                kind,
                message: message.into(),
                #[cfg(feature = "std")]
                source: None,
            }),
        }
    }

    /// A value at `key` that the breaker cannot have written.
    pub fn corrupt(key: &str, detail: impl fmt::Display) -> Self {
        Self::new(
            StorageErrorKind::Corrupt,
            alloc::format!("key {key:?}: {detail}"),
        )
    }

    /// Attaches the underlying error, returned by `source()`.
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    #[must_use]
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        self.inner.source = Some(source.into());
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> StorageErrorKind {
        self.inner.kind
    }

    /// The message, without the kind.
    pub fn message(&self) -> &str {
        &self.inner.message
    }
}

impl fmt::Debug for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("StorageError");
        d.field("kind", &self.inner.kind)
            .field("message", &self.inner.message);
        #[cfg(feature = "std")]
        d.field("source", &self.inner.source);
        d.finish()
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.inner.kind, self.inner.message)
    }
}

#[cfg(feature = "std")]
impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.inner
            .source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// The result of a guarded call that did not succeed.
///
/// `E` is the call's own error. `enter()` returns `Error` with the default
/// `E = Infallible`, since no call has run yet.
#[non_exhaustive]
pub enum Error<E = Infallible> {
    /// The circuit is open (or half-open with every trial slot taken): the
    /// call was not run.
    #[non_exhaustive]
    Open {
        /// The breaker's name.
        name: CircuitName,
        /// How long until a call may pass again, where known.
        retry_after: Option<Duration>,
    },
    /// The call ran and failed with its own error.
    Inner(E),
    /// The breaker's storage failed, and the call was not run.
    Storage(StorageError),
}

impl<E> Error<E> {
    /// Whether the call was rejected by an open circuit.
    pub fn is_open(&self) -> bool {
        matches!(self, Self::Open { .. })
    }

    /// The call's own error, if it ran and failed.
    pub fn into_inner(self) -> Option<E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// A reference to the call's own error, if it ran and failed.
    pub fn inner(&self) -> Option<&E> {
        match self {
            Self::Inner(e) => Some(e),
            _ => None,
        }
    }

    /// For a rejection: how long until a call may pass again, where known.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Open { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// Maps the call's own error.
    pub fn map_inner<F>(self, f: impl FnOnce(E) -> F) -> Error<F> {
        match self {
            Self::Open { name, retry_after } => Error::Open { name, retry_after },
            Self::Inner(e) => Error::Inner(f(e)),
            Self::Storage(e) => Error::Storage(e),
        }
    }

    /// A rejection by the open circuit `name` (facades build it; tests may too).
    #[inline]
    pub fn rejected(name: impl Into<CircuitName>, retry_after: Option<Duration>) -> Self {
        Self::Open {
            name: name.into(),
            retry_after,
        }
    }
}

impl Error<Infallible> {
    /// Turns the error of `enter()` into the error of any call.
    pub fn cast<E>(self) -> Error<E> {
        self.map_inner(|never| match never {})
    }
}

impl<E: fmt::Debug> fmt::Debug for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open { name, retry_after } => f
                .debug_struct("Open")
                .field("name", name)
                .field("retry_after", retry_after)
                .finish(),
            Self::Inner(e) => f.debug_tuple("Inner").field(e).finish(),
            Self::Storage(e) => f.debug_tuple("Storage").field(e).finish(),
        }
    }
}

impl<E: fmt::Display> fmt::Display for Error<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Open {
                name,
                retry_after: Some(after),
            } => write!(f, "circuit {name:?} is open; retry in {after:?}"),
            Self::Open { name, .. } => write!(f, "circuit {name:?} is open"),
            Self::Inner(e) => fmt::Display::fmt(e, f),
            Self::Storage(e) => write!(f, "circuit breaker storage failed: {e}"),
        }
    }
}

#[cfg(feature = "std")]
impl<E: std::error::Error + 'static> std::error::Error for Error<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Open { .. } => None,
            // Display is the inner error's own, so its source comes next.
            Self::Inner(e) => e.source(),
            // Likewise: Display says the storage error, so what caused it
            // comes next.
            Self::Storage(e) => std::error::Error::source(e),
        }
    }
}

impl<E> From<StorageError> for Error<E> {
    fn from(e: StorageError) -> Self {
        Self::Storage(e)
    }
}
