//! Config keys that were renamed: the old spelling is still read, with a warning naming the new
//! key and the value to write, and giving both spellings different values is an error (which one
//! was meant cannot be guessed). The concepts whose sections renamed a key call [`renamed`].

use std::fmt::Display;

/// A warning about a key as written: `key` (the old spelling) and what to do instead.
pub type Warning = (String, String);

/// The value to use for a key renamed from `old_key` to `new_key`: `new` unless the old
/// spelling was given (`old`), in which case its value, with a warning. `default` is the new
/// key's default, which is what `new` holds when only the old key was written.
pub fn renamed<T: PartialEq + Copy + Display>(
    old_key: &str,
    new_key: &str,
    old: Option<T>,
    new: T,
    default: T,
) -> Result<(T, Option<Warning>), String> {
    match old {
        None => Ok((new, None)),
        Some(v) if new != default && new != v => Err(format!(
            "{old_key}: {v} is the old spelling of {new_key}, which is also set to {new}; \
             remove {old_key}"
        )),
        Some(v) => Ok((
            v,
            Some((
                old_key.to_string(),
                format!("renamed; write {new_key}: {v} instead"),
            )),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_key_is_read_with_a_warning_and_both_differently_is_an_error() {
        assert_eq!(renamed("a.old", "a.new", None, 5, 3), Ok((5, None)));
        let (v, warning) = renamed("a.old", "a.new", Some(4), 3, 3).unwrap();
        assert_eq!(v, 4);
        assert_eq!(
            warning,
            Some(("a.old".into(), "renamed; write a.new: 4 instead".into()))
        );
        assert_eq!(renamed("a.old", "a.new", Some(4), 4, 3).unwrap().0, 4);
        let e = renamed("a.old", "a.new", Some(4), 5, 3).unwrap_err();
        assert!(
            e.contains("a.old") && e.contains("a.new") && e.contains("remove"),
            "{e}"
        );
    }
}
