//! Secrets kept out of what hashrig prints: a password in a URL's user
//! part (`http://user:secret@host`) is shown as `********`.

/// What a masked secret is shown as.
pub const MASK: &str = "********";

/// Splits `scheme://user:password@rest` into the URL without its user
/// part, and the user and password; `None` when there is no user part.
pub fn split_userinfo(url: &str) -> Option<(String, String, Option<String>)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (userinfo, host) = rest[..authority_end].rsplit_once('@')?;
    let (user, password) = match userinfo.split_once(':') {
        Some((u, p)) => (u.to_owned(), Some(p.to_owned())),
        None => (userinfo.to_owned(), None),
    };
    Some((
        format!("{scheme}://{host}{}", &rest[authority_end..]),
        user,
        password,
    ))
}

/// `url` with the password of its user part masked.
pub fn mask_url(url: &str) -> String {
    match split_userinfo(url) {
        Some((bare, user, Some(_))) => {
            let (scheme, rest) = bare.split_once("://").unwrap_or(("", &bare));
            format!("{scheme}://{user}:{MASK}@{rest}")
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_masked() {
        assert_eq!(
            mask_url("http://u:secret@127.0.0.1:8332/wallet/x"),
            "http://u:********@127.0.0.1:8332/wallet/x"
        );
        assert_eq!(
            mask_url("stratum+tcp://w:p@ss@pool:3333"),
            "stratum+tcp://w:********@pool:3333"
        );
        assert_eq!(mask_url("http://127.0.0.1:8332"), "http://127.0.0.1:8332");
        assert_eq!(mask_url("http://u@host:1"), "http://u@host:1");
        assert_eq!(
            split_userinfo("http://u:pw@h:1/p"),
            Some(("http://h:1/p".into(), "u".into(), Some("pw".into())))
        );
    }
}
