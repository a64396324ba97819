//! The rig's own dashboard: one page and its script and style, embedded in
//! the binary (no build step, nothing fetched from elsewhere), served by
//! the API's server at `/`. The page needs no key; every figure it shows
//! comes from the `/v1` routes with the key the operator gives it.

use axum::http::header;
use axum::response::{IntoResponse, Response};

const INDEX: &str = include_str!("index.html");
const SCRIPT: &str = include_str!("dashboard.js");
const STYLE: &str = include_str!("dashboard.css");

/// Only this server's own script, style and API; no inline script, no
/// framing, no forms posting elsewhere.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; \
     form-action 'none'; frame-ancestors 'none'";

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            // A new binary's page is used at once.
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

pub async fn index() -> Response {
    asset("text/html; charset=utf-8", INDEX)
}

pub async fn script() -> Response {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

pub async fn style() -> Response {
    asset("text/css; charset=utf-8", STYLE)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_has_no_inline_script_or_outside_address() {
        // CSP would block them: the page must not need them.
        assert!(!INDEX.contains("<script>"), "inline script");
        assert!(!INDEX.contains(" style="), "inline style");
        assert!(!INDEX.contains(" onclick=") && !INDEX.contains(" onload="));
        for page in [INDEX, SCRIPT, STYLE] {
            assert!(!page.contains("http://") || page.contains("http://www.w3.org/2000/svg"));
            assert!(!page.contains("https://"), "an outside address");
        }
        assert!(
            !SCRIPT.contains("innerHTML"),
            "API data goes in as text only"
        );
        assert!(
            !SCRIPT.contains("new EventSource"),
            "it cannot send the key"
        );
    }
}
