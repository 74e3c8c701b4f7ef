//! A circuit's name, as a breaker keeps it and a rejection carries it.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use core::borrow::Borrow;
use core::cmp::Ordering;
use core::fmt;
use core::hash::{Hash, Hasher};
use core::num::NonZeroU8;
use core::ops::Deref;

/// The longest name kept inline, in bytes.
const INLINE: usize = 23;

/// A circuit's name: a string that is cheap to clone.
///
/// Every rejection returns the circuit's name in [`Error::Open`], so the
/// name is cloned once per rejected call. A name of up to 23 bytes is kept
/// inline and cloned by copying three words: no allocation and no atomic
/// operation, so that rejecting stays fast however many threads reject at
/// once. A longer name is shared, and its clone is a reference count.
///
/// It reads as a `&str` (it derefs to one) and compares, hashes, orders and
/// prints as the string does.
///
/// ```
/// use lasier_core::CircuitName;
///
/// let name = CircuitName::from("payments");
/// assert_eq!(name, "payments");
/// assert_eq!(name.len(), 8);
/// assert_eq!(format!("{name}"), "payments");
/// ```
///
/// [`Error::Open`]: crate::Error::Open
#[derive(Clone)]
pub struct CircuitName(Repr);

#[derive(Clone)]
enum Repr {
    Inline(Inline),
    Shared(Arc<str>),
}

/// A short name's bytes, and its length plus one in the last byte: never
/// zero, so that `Repr` keeps its tag there and stays three words, and
/// aligned, so that a copy is three word moves.
#[derive(Clone, Copy)]
#[repr(C, align(8))]
struct Inline {
    /// The name in the first `len` bytes; always whole UTF-8 characters,
    /// since they are copied from a `str` that fits entirely.
    bytes: [u8; INLINE],
    len_plus_one: NonZeroU8,
}

impl Inline {
    fn new(name: &str) -> Option<Self> {
        let len = name.len();
        if len > INLINE {
            return None;
        }
        let mut bytes = [0; INLINE];
        bytes[..len].copy_from_slice(name.as_bytes());
        let len_plus_one = NonZeroU8::new(u8::try_from(len + 1).ok()?)?;
        Some(Self {
            bytes,
            len_plus_one,
        })
    }

    fn as_str(&self) -> &str {
        let len = usize::from(self.len_plus_one.get() - 1);
        // Copied from a whole `str`, so always valid: the empty name is
        // never reached.
        core::str::from_utf8(&self.bytes[..len]).unwrap_or_default()
    }
}

impl CircuitName {
    /// The name.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Inline(inline) => inline.as_str(),
            Repr::Shared(name) => name,
        }
    }

    fn inline(name: &str) -> Option<Self> {
        Inline::new(name).map(|inline| Self(Repr::Inline(inline)))
    }
}

impl Deref for CircuitName {
    type Target = str;

    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for CircuitName {
    fn as_ref(&self) -> &str {
        self
    }
}

impl Borrow<str> for CircuitName {
    fn borrow(&self) -> &str {
        self
    }
}

impl From<&str> for CircuitName {
    fn from(name: &str) -> Self {
        Self::inline(name).unwrap_or_else(|| Self(Repr::Shared(Arc::from(name))))
    }
}

impl From<String> for CircuitName {
    fn from(name: String) -> Self {
        Self::inline(&name).unwrap_or_else(|| Self(Repr::Shared(Arc::from(name))))
    }
}

impl From<Box<str>> for CircuitName {
    fn from(name: Box<str>) -> Self {
        Self::inline(&name).unwrap_or_else(|| Self(Repr::Shared(Arc::from(name))))
    }
}

impl From<Arc<str>> for CircuitName {
    fn from(name: Arc<str>) -> Self {
        Self::inline(&name).unwrap_or(Self(Repr::Shared(name)))
    }
}

impl From<&CircuitName> for CircuitName {
    fn from(name: &CircuitName) -> Self {
        name.clone()
    }
}

impl From<CircuitName> for String {
    fn from(name: CircuitName) -> Self {
        name.as_str().into()
    }
}

impl fmt::Debug for CircuitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for CircuitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl PartialEq for CircuitName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for CircuitName {}

impl PartialEq<str> for CircuitName {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for CircuitName {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for CircuitName {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<CircuitName> for str {
    fn eq(&self, other: &CircuitName) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<CircuitName> for &str {
    fn eq(&self, other: &CircuitName) -> bool {
        *self == other.as_str()
    }
}

impl PartialOrd for CircuitName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for CircuitName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl Hash for CircuitName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn reads_back_every_length_around_the_inline_limit() {
        for len in 0..=INLINE + 2 {
            let text: String = "é".repeat(len / 2) + &"x".repeat(len % 2);
            for name in [
                CircuitName::from(text.as_str()),
                CircuitName::from(text.clone()),
                CircuitName::from(Arc::<str>::from(text.as_str())),
                CircuitName::from(Box::<str>::from(text.as_str())),
            ] {
                assert_eq!(name.as_str(), text);
                assert_eq!(name.clone(), name);
                assert_eq!(name.to_string(), text);
                assert_eq!(alloc::format!("{name:?}"), alloc::format!("{text:?}"));
            }
        }
    }

    #[test]
    fn is_three_words() {
        assert_eq!(core::mem::size_of::<CircuitName>(), 24);
    }

    #[test]
    fn short_names_are_inline_and_long_ones_shared() {
        assert!(matches!(
            CircuitName::from("x".repeat(INLINE).as_str()).0,
            Repr::Inline(_)
        ));
        assert!(matches!(
            CircuitName::from("x".repeat(INLINE + 1).as_str()).0,
            Repr::Shared(_)
        ));
        // A shared name's clone is the same allocation.
        let long = CircuitName::from("a name longer than twenty-three bytes");
        let (Repr::Shared(a), Repr::Shared(b)) = (&long.0, &long.clone().0) else {
            panic!("a long name is shared");
        };
        assert!(Arc::ptr_eq(a, b));
    }

    #[test]
    fn compares_hashes_and_orders_as_its_string() {
        use core::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        let short = CircuitName::from("api");
        let long = CircuitName::from("api".repeat(10));
        assert_eq!(short, "api");
        assert_eq!("api", short);
        assert_eq!(short, String::from("api"));
        assert_ne!(short, long);
        assert!(short < long);
        assert_eq!(hasher.hash_one(&short), hasher.hash_one("api"));
        let mut map = std::collections::HashMap::new();
        map.insert(long.clone(), 1);
        assert_eq!(map.get("apiapiapiapiapiapiapiapiapiapi"), Some(&1));
    }
}
