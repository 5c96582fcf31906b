//! The operator dashboard: static files embedded in the binary (`src/dashboard/`),
//! ES modules with no build step, loading nothing from anywhere but this server.

use axum::extract::Path;
use axum::http::header;
use axum::response::{IntoResponse, Response};

/// Every file the dashboard serves, by name under `/dashboard/`.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../dashboard/index.html"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../dashboard/app.css"),
    ),
    ("app.js", JS, include_str!("../dashboard/app.js")),
    ("api.js", JS, include_str!("../dashboard/api.js")),
    ("ui.js", JS, include_str!("../dashboard/ui.js")),
    ("map.js", JS, include_str!("../dashboard/map.js")),
    ("vehicles.js", JS, include_str!("../dashboard/vehicles.js")),
    (
        "reservations.js",
        JS,
        include_str!("../dashboard/reservations.js"),
    ),
    ("custody.js", JS, include_str!("../dashboard/custody.js")),
    (
        "analytics.js",
        JS,
        include_str!("../dashboard/analytics.js"),
    ),
    ("devices.js", JS, include_str!("../dashboard/devices.js")),
];

const JS: &str = "text/javascript; charset=utf-8";

/// The page loads nothing from elsewhere; say so to the browser. Styles may be
/// set from script (element.style), scripts come only from `/dashboard/`.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
                   img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'";

fn file(name: &str) -> Option<(&'static str, &'static str)> {
    FILES
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ty, body)| (*ty, *body))
}

fn respond(ty: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, ty),
            (header::CACHE_CONTROL, "no-cache"),
            (header::CONTENT_SECURITY_POLICY, CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

pub async fn page() -> Response {
    let (ty, body) = file("index.html").expect("index.html is embedded");
    respond(ty, body)
}

/// `GET /dashboard/{name}`: one of the embedded files, or a 404.
pub async fn asset(Path(name): Path<String>) -> Response {
    match file(&name) {
        Some((ty, body)) => respond(ty, body),
        None => {
            super::error::ApiError::not_found("not_found", "no such dashboard file").into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::StatusCode;

    /// The only absolute URL allowed in the assets: the SVG namespace, which
    /// names elements and is never fetched.
    const SVG_NS: &str = "http://www.w3.org/2000/svg";

    #[test]
    fn the_embedded_dashboard_stays_small() {
        let total: usize = FILES.iter().map(|(_, _, b)| b.len()).sum();
        assert!(total < 300 * 1024, "the dashboard is {total} bytes");
    }

    #[test]
    fn the_dashboard_loads_nothing_from_another_origin() {
        for (name, _, body) in FILES {
            let cleaned = body.replace(SVG_NS, "");
            for scheme in ["http://", "https://", "//cdn", "ws://", "wss://"] {
                assert!(
                    !cleaned.contains(scheme),
                    "{name} names an external URL ({scheme})"
                );
            }
        }
    }

    #[test]
    fn every_module_and_stylesheet_the_dashboard_names_is_embedded() {
        for (name, _, body) in FILES {
            for quote in ["\"./", "\"/dashboard/"] {
                for (i, _) in body.match_indices(quote) {
                    let rest = &body[i + quote.len()..];
                    let target = &rest[..rest.find('"').unwrap_or(rest.len())];
                    assert!(
                        file(target).is_some(),
                        "{name} refers to {target}, which is not embedded"
                    );
                }
            }
        }
    }

    #[tokio::test]
    async fn an_unknown_dashboard_file_is_a_404_in_the_api_error_shape() {
        let r = asset(Path("../Cargo.toml".into())).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = asset(Path("map.js".into())).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], JS);
    }
}
