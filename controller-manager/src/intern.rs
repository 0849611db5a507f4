//! Sharing equal values between cached objects.
//!
//! The pods of one ReplicaSet carry the same labels, the same default tolerations and the same
//! containers; cached separately, those copies are most of what 10,000 cached pods cost. An
//! [`Interner`] hands out one `Arc` per distinct value, so each pod holds a pointer instead.

use std::sync::{Arc, Mutex};

/// At most this many distinct values are remembered per interner; beyond it, a value that no
/// two holders share is forgotten to make room, and if every slot is shared the new value is
/// simply not shared. A table of unique values (pods with one-of-a-kind labels) therefore costs
/// no more than the values themselves.
const SLOTS: usize = 128;

pub struct Interner<T> {
    values: Mutex<Vec<Arc<T>>>,
}

impl<T: PartialEq> Interner<T> {
    pub const fn new() -> Self {
        Interner {
            values: Mutex::new(Vec::new()),
        }
    }

    /// The shared copy of `value`.
    pub fn intern(&self, value: T) -> Arc<T> {
        let mut values = self.values.lock().expect("interner lock");
        if let Some(v) = values.iter().find(|v| ***v == value) {
            return v.clone();
        }
        if values.len() >= SLOTS {
            // One reference is the table's own: 2 means one holder, nothing shared.
            values.retain(|v| Arc::strong_count(v) > 2);
        }
        let v = Arc::new(value);
        if values.len() < SLOTS {
            values.push(v.clone());
        }
        v
    }
}

impl<T: PartialEq> Default for Interner<T> {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_values_share_one_allocation() {
        let i = Interner::new();
        let a = i.intern(vec![1, 2]);
        let b = i.intern(vec![1, 2]);
        let c = i.intern(vec![3]);
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn a_full_table_forgets_unshared_values_first() {
        let i = Interner::new();
        let shared: Vec<_> = (0..SLOTS / 2).map(|n| (i.intern(n), i.intern(n))).collect();
        let single: Vec<_> = (SLOTS / 2..SLOTS).map(|n| i.intern(n)).collect();
        // Full: the next value pushes out the singletons, and is itself remembered.
        let x = i.intern(SLOTS);
        assert!(Arc::ptr_eq(&x, &i.intern(SLOTS)));
        assert!(Arc::ptr_eq(&shared[0].0, &i.intern(0)));
        // A forgotten value still works, it is just no longer shared.
        assert!(!Arc::ptr_eq(&single[0], &i.intern(SLOTS / 2)));
        assert_eq!(*i.intern(SLOTS / 2), SLOTS / 2);
    }
}
