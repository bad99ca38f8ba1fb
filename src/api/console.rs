//! `GET /console`: the operations console page (plain HTML/CSS/JS in `console.html`,
//! compiled into the binary, no build step). The page holds no data and no rights of its
//! own: it logs an operator in (`/api/operator/login`) and then calls the same API a
//! script would (`/api/campaigns...`), so the server's role checks are the only ones.

use axum::http::header;
use axum::response::{Html, IntoResponse, Response};

pub const PAGE: &str = include_str!("console.html");

pub async fn page() -> Response {
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; script-src 'self' 'unsafe-inline'; \
                 style-src 'self' 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'",
            ),
        ],
        Html(PAGE),
    )
        .into_response()
}
