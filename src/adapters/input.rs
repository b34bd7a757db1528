//! Files (and stdin) a person hands deploybot, read with a limit: a manifest, a diff, a scenario,
//! a config. Nothing here trusts a file's size: `/dev/zero` or a mistyped multi-gigabyte path
//! is refused at the limit, with the limit in the message, instead of being read until memory
//! runs out (it grew `manifest` to 23.9 GB).

use std::io::Read;
use std::path::Path;

/// Why an input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("reading {what}: {cause}")]
    Read { what: String, cause: std::io::Error },
    #[error("{what} is larger than {limit} bytes, the most deploybot reads of it")]
    TooLarge { what: String, limit: usize },
}

/// The bytes of `path` (`-` is stdin), at most `limit` of them.
pub fn read(path: &Path, limit: usize) -> Result<Vec<u8>, InputError> {
    let what = if path == Path::new("-") {
        "stdin".to_string()
    } else {
        path.display().to_string()
    };
    let err = |cause| InputError::Read {
        what: what.clone(),
        cause,
    };
    let mut buf = Vec::new();
    let taken = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    // One byte past the limit tells "exactly at it" from "more".
    if path == Path::new("-") {
        std::io::stdin()
            .lock()
            .take(taken)
            .read_to_end(&mut buf)
            .map_err(err)?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(taken).read_to_end(&mut buf))
            .map_err(err)?;
    }
    if buf.len() > limit {
        return Err(InputError::TooLarge { what, limit });
    }
    Ok(buf)
}

/// [`read`] as UTF-8 text.
pub fn read_text(path: &Path, limit: usize) -> Result<String, InputError> {
    let bytes = read(path, limit)?;
    String::from_utf8(bytes).map_err(|e| InputError::Read {
        what: path.display().to_string(),
        cause: std::io::Error::new(std::io::ErrorKind::InvalidData, e.utf8_error()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_up_to_the_limit_and_refuses_past_it() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, b"0123456789").unwrap();
        assert_eq!(read(&f, 10).unwrap(), b"0123456789");
        let e = read(&f, 9).unwrap_err();
        assert!(e.to_string().contains("larger than 9 bytes"), "{e}");
        let e = read(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(matches!(e, InputError::TooLarge { .. }), "{e}");
        assert!(read(&dir.path().join("missing"), 10).is_err());
        std::fs::write(&f, b"\xff\xfe").unwrap();
        assert!(read_text(&f, 10).is_err());
    }
}
