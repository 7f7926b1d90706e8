//! [`Name`]: a cheap-to-clone name for a layer instance.

use std::borrow::Borrow;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// The name of a layer instance (`"payments"`, `"inventory-breaker"`), carried by
/// rejections and events.
///
/// A `Name` is either a `&'static str` or a shared `Arc<str>`, so cloning it on a hot path
/// never copies the text.
///
/// ```
/// use tower_bulwark_core::Name;
///
/// let fixed = Name::from("payments");
/// let built = Name::from(format!("shard-{}", 7));
/// assert_eq!(fixed.as_str(), "payments");
/// assert_eq!(built, "shard-7");
/// ```
#[derive(Clone)]
pub struct Name(Repr);

#[derive(Clone)]
enum Repr {
    Static(&'static str),
    Shared(Arc<str>),
}

impl Name {
    /// A name from a string literal; usable in `const` items.
    pub const fn new_static(name: &'static str) -> Self {
        Name(Repr::Static(name))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Repr::Static(s) => s,
            Repr::Shared(s) => s,
        }
    }
}

impl Deref for Name {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Name {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for Name {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl From<&'static str> for Name {
    fn from(name: &'static str) -> Self {
        Name::new_static(name)
    }
}

impl From<String> for Name {
    fn from(name: String) -> Self {
        Name(Repr::Shared(name.into()))
    }
}

impl From<Arc<str>> for Name {
    fn from(name: Arc<str>) -> Self {
        Name(Repr::Shared(name))
    }
}

impl PartialEq for Name {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Name {}

impl PartialEq<str> for Name {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Name {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl std::hash::Hash for Name {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn static_and_shared_names_compare_and_hash_by_text() {
        let a = Name::from("edge");
        let b = Name::from(String::from("edge"));
        let c = Name::from(Arc::<str>::from("edge"));
        assert_eq!(a, b);
        assert_eq!(b, c);
        let set: HashSet<Name> = [a, b, c].into_iter().collect();
        assert_eq!(set.len(), 1);
        assert!(set.contains("edge"));
    }

    #[test]
    fn formats_as_its_text() {
        let name = Name::new_static("payments");
        assert_eq!(name.to_string(), "payments");
        assert_eq!(format!("{name:?}"), "\"payments\"");
        assert_eq!(&*name, "payments");
    }
}
