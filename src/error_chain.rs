//! An error printed whole: its own message, then each `source()` after a
//! colon, as anyhow's `{:#}` does. Library errors keep their cause as
//! `source()` and leave it out of their own message (rust-bitcoin's rule),
//! so a log line or a stored "last error" prints them through [`Chain`].

use std::error::Error;
use std::fmt;

/// Displays `error` and every cause under it: `connecting to pool: timed out`.
pub struct Chain<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut cause = self.0.source();
        while let Some(error) = cause {
            write!(f, ": {error}")?;
            cause = error.source();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("reading the keys file")]
    struct Outer {
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn prints_every_cause_once() {
        let error = Outer {
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
        };
        assert_eq!(
            Chain(&error).to_string(),
            "reading the keys file: no such file"
        );
    }
}
