//! The web console (issue 14): static HTML, CSS and JavaScript modules from
//! `console/`, embedded in the binary with `include_str!` (a dozen files, no
//! build step: `cargo run -- serve` needs no Node toolchain), served at `/`
//! and `/console/<file>`.
//!
//! The console is a client of the public GraphQL API like any other: it
//! holds no secret and the node serves it to anyone. Every answer carries a
//! strict Content-Security-Policy (scripts, styles and connections to this
//! origin only, no inline script or style, no framing), `nosniff` and no
//! referrer. The token never travels in a URL: a sign-in link carries it in
//! the fragment, which browsers do not send.

use actix_web::http::header;
use actix_web::{web, HttpResponse};

/// One embedded file: its path under `/console/`, content type and text.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

macro_rules! assets {
    ($($path:literal => $ty:expr),* $(,)?) => {
        &[$(Asset {
            path: $path,
            content_type: $ty,
            body: include_str!(concat!("../../console/", $path)),
        }),*]
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// Every file of `console/` (a unit test checks that none is missing).
static ASSETS: &[Asset] = assets! {
    "index.html" => "text/html; charset=utf-8",
    "style.css" => "text/css; charset=utf-8",
    "js/app.js" => JS,
    "js/gql.js" => JS,
    "js/ui.js" => JS,
    "js/charts.js" => JS,
    "js/ecg.js" => JS,
    "js/wall.js" => JS,
    "js/patient.js" => JS,
    "js/consults.js" => JS,
    "js/ops.js" => JS,
    "js/home.js" => JS,
};

/// The policy every console answer carries. `connect-src 'self'` covers
/// the WebSocket to the same host and port (ws: and wss:, CSP Level 3).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

fn serve(asset: &Asset) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(asset.content_type)
        .insert_header((header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        // A new binary may bring a new console: always ask again.
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(asset.body)
}

fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

/// `GET /`: the console's page.
pub(super) async fn index() -> HttpResponse {
    serve(find("index.html").expect("index.html is embedded"))
}

/// `GET /console/{path}`: one of its files, or 404.
pub(super) async fn asset(path: web::Path<String>) -> HttpResponse {
    match find(&path) {
        Some(a) => serve(a),
        None => HttpResponse::NotFound()
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .content_type("text/plain; charset=utf-8")
            .body("no such file\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `console/` is embedded (and every embedded one exists,
    /// or `include_str!` would not compile).
    #[test]
    fn every_console_file_is_embedded() {
        fn walk(dir: &std::path::Path, root: &std::path::Path, out: &mut Vec<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    walk(&p, root, out);
                } else {
                    out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
                }
            }
        }
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut files = Vec::new();
        walk(&root, &root, &mut files);
        for f in &files {
            assert!(find(f).is_some(), "console/{f} is not in ASSETS");
        }
        assert_eq!(files.len(), ASSETS.len());
    }

    /// No inline script or style: the policy would block them.
    #[test]
    fn the_page_has_no_inline_script_or_style() {
        let html = find("index.html").unwrap().body;
        assert!(!html.contains("<script>") && !html.contains("style="));
        assert!(!html.contains("<style"));
        for a in ASSETS.iter().filter(|a| a.path.ends_with(".js")) {
            assert!(!a.body.contains("innerHTML"), "{}: innerHTML", a.path);
            assert!(!a.body.contains("eval("), "{}: eval", a.path);
        }
    }
}
