//! The live dots of one [`OrSet`](crate::OrSet) element: almost always exactly one (the element
//! was added once), kept inline then, so a big set costs no tree allocation per member.

use std::collections::BTreeSet;

use crate::or_set::Dot;

/// A non-empty set of dots (empty only transiently, while being filtered). Canonical: one
/// dot is always `One`, so derived equality and hashing are those of the set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Dots<A> {
    One(Dot<A>),
    /// Two or more (or, transiently, none).
    Many(BTreeSet<Dot<A>>),
}

impl<A: Ord> Dots<A> {
    pub(crate) fn one(dot: Dot<A>) -> Self {
        Self::One(dot)
    }

    /// From a set; `None` if it is empty.
    pub(crate) fn from_set(mut set: BTreeSet<Dot<A>>) -> Option<Self> {
        match set.len() {
            0 => None,
            1 => set.pop_first().map(Self::One),
            _ => Some(Self::Many(set)),
        }
    }

    pub(crate) fn into_set(self) -> BTreeSet<Dot<A>> {
        match self {
            Self::One(dot) => BTreeSet::from([dot]),
            Self::Many(set) => set,
        }
    }

    pub(crate) fn contains(&self, dot: &Dot<A>) -> bool {
        match self {
            Self::One(mine) => mine == dot,
            Self::Many(set) => set.contains(dot),
        }
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Self::One(_) => 1,
            Self::Many(set) => set.len(),
        }
    }

    pub(crate) fn iter(&self) -> DotsIter<'_, A> {
        match self {
            Self::One(dot) => DotsIter::One(Some(dot)),
            Self::Many(set) => DotsIter::Many(set.iter()),
        }
    }

    /// Keeps the dots `keep` accepts; `false` if none is left (the caller drops the entry).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(&Dot<A>) -> bool) -> bool {
        match self {
            Self::One(dot) => keep(dot),
            Self::Many(set) => {
                set.retain(|dot| keep(dot));
                match set.len() {
                    0 => false,
                    1 => {
                        if let Some(dot) = set.pop_first() {
                            *self = Self::One(dot);
                        }
                        true
                    }
                    _ => true,
                }
            }
        }
    }
}

impl<A: Ord + Clone> Dots<A> {
    /// Adds `dot`; `true` if it was new.
    pub(crate) fn insert(&mut self, dot: Dot<A>) -> bool {
        match self {
            Self::One(mine) if *mine == dot => false,
            Self::One(mine) => {
                let set = BTreeSet::from([mine.clone(), dot]);
                *self = Self::Many(set);
                true
            }
            Self::Many(set) => set.insert(dot),
        }
    }
}

/// Iterator over a [`Dots`].
pub(crate) enum DotsIter<'a, A> {
    One(Option<&'a Dot<A>>),
    Many(std::collections::btree_set::Iter<'a, Dot<A>>),
}

impl<'a, A> Iterator for DotsIter<'a, A> {
    type Item = &'a Dot<A>;
    fn next(&mut self) -> Option<&'a Dot<A>> {
        match self {
            Self::One(dot) => dot.take(),
            Self::Many(iter) => iter.next(),
        }
    }
}

/// Serialized as the set of dots it is (the format of a `BTreeSet<Dot>`).
#[cfg(feature = "serde")]
impl<A: serde::Serialize + Ord + Clone> serde::Serialize for Dots<A> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut seq = serializer.serialize_seq(Some(self.len()))?;
        for dot in self.iter() {
            seq.serialize_element(dot)?;
        }
        seq.end()
    }
}

/// Read as a set of dots, without a tree for the usual single dot; an empty one is kept
/// (the set's `from_parts` drops it).
#[cfg(feature = "serde")]
impl<'de, A: serde::Deserialize<'de> + Ord + Clone> serde::Deserialize<'de> for Dots<A> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visit<A>(std::marker::PhantomData<A>);
        impl<'de, A: serde::Deserialize<'de> + Ord + Clone> serde::de::Visitor<'de> for Visit<A> {
            type Value = Dots<A>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a set of dots")
            }
            fn visit_seq<S: serde::de::SeqAccess<'de>>(
                self,
                mut seq: S,
            ) -> Result<Dots<A>, S::Error> {
                let Some(first) = seq.next_element::<Dot<A>>()? else {
                    return Ok(Dots::Many(BTreeSet::new()));
                };
                let mut dots = Dots::One(first);
                while let Some(dot) = seq.next_element::<Dot<A>>()? {
                    dots.insert(dot);
                }
                Ok(dots)
            }
        }
        deserializer.deserialize_seq(Visit(std::marker::PhantomData))
    }
}
