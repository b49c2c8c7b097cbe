//! GraphiQL from the server itself: the page at `GET /graphql` and its scripts and styles
//! under `/graphql/assets/`, all compiled into the binary from `static/graphiql/` (pinned
//! production builds from the npm registry; versions and licences in its README). The
//! page loads nothing from any other host, so it works offline.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};

/// The page; it references only [`ASSETS`].
pub const PAGE: &str = include_str!("../../static/graphiql/index.html");

/// Vendor files carry their version in their name, so browsers may keep them for a year.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// The project's own start-up script changes with the server: browsers ask again.
const REVALIDATE: &str = "no-cache";

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

/// `(name under /graphql/assets/, content type, cache policy, bytes)`.
pub const ASSETS: [(&str, &str, &str, &[u8]); 5] = [
    (
        "react-18.3.1.production.min.js",
        JS,
        IMMUTABLE,
        include_bytes!("../../static/graphiql/react.production.min.js"),
    ),
    (
        "react-dom-18.3.1.production.min.js",
        JS,
        IMMUTABLE,
        include_bytes!("../../static/graphiql/react-dom.production.min.js"),
    ),
    (
        "graphiql-4.1.2.min.js",
        JS,
        IMMUTABLE,
        include_bytes!("../../static/graphiql/graphiql.min.js"),
    ),
    (
        "graphiql-4.1.2.min.css",
        CSS,
        IMMUTABLE,
        include_bytes!("../../static/graphiql/graphiql.min.css"),
    ),
    (
        "init.js",
        JS,
        REVALIDATE,
        include_bytes!("../../static/graphiql/init.js"),
    ),
];

pub async fn page() -> Response {
    ([(header::CACHE_CONTROL, REVALIDATE)], Html(PAGE)).into_response()
}

pub async fn asset(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, ..)| *n == name) {
        Some((_, content_type, cache, bytes)) => (
            [
                (header::CONTENT_TYPE, *content_type),
                (header::CACHE_CONTROL, *cache),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            *bytes,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        assert!(!PAGE.contains("//"), "the page names another host");
        for (name, ..) in ASSETS {
            assert!(
                PAGE.contains(&format!("\"/graphql/assets/{name}\"")),
                "the page does not load {name}"
            );
        }
    }
}
