//! Request → response for every non-streaming route of SPEC §3. Bodies are validated
//! before any session lookup (a bad body for an unknown session is a 400, not a 404).

use crate::http::request::{HttpError, Request};
use crate::http::response::{write_error_with_headers, write_response};
use crate::http::router::{route, Route, RouteError};
use crate::limits::{PAGE_BYTES_MAX, PAGE_ENVELOPE_BYTES};
use crate::runtime::api;
use crate::session::json::push_json_string;
use crate::session::{self, ApiError};

/// A finished response, ready to write.
pub struct Response {
    pub bytes: Vec<u8>,
    pub status: u16,
    pub route: &'static str,
}

fn json(req: &Request, status: u16, body: &[u8], route: &'static str) -> Response {
    let mut bytes = Vec::with_capacity(body.len() + 128);
    write_response(&mut bytes, req.version_minor, status, &[], Some("application/json"), body, req.keep_alive);
    Response { bytes, status, route }
}

pub fn api_error(req: &Request, e: &ApiError, route: &'static str) -> Response {
    json(req, e.status(), e.to_json().as_bytes(), route)
}

pub fn http_error(req: &Request, e: &HttpError, allow: Option<&str>, route: &'static str) -> Response {
    let mut bytes = Vec::new();
    let headers: Vec<(&str, &str)> = allow.map(|a| vec![("allow", a)]).unwrap_or_default();
    write_error_with_headers(&mut bytes, req.version_minor, e, &headers, req.keep_alive);
    Response { bytes, status: e.status, route }
}

/// Which route a request is for, or the error response for an unroutable one.
pub fn resolve(req: &Request) -> Result<Route, Response> {
    route(&req.method, &req.path).map_err(|e| {
        let label = crate::http::router::route_label(&req.path);
        let allow = match &e {
            RouteError::MethodNotAllowed { allow } => Some(*allow),
            _ => None,
        };
        http_error(req, &e.to_http_error(), allow, label)
    })
}

/// Answer a non-tail request. Every arm but the append is boxed, which keeps this future
/// (moved into the connection's in-flight queue for each pipelined append) small.
pub async fn respond(req: Request, route: Route) -> Response {
    let label = route.label();
    let result: Result<(u16, Vec<u8>), ApiError> = match route {
        Route::CreateSession => match session::parse_create(&req.body) {
            Err(e) => Err(e),
            Ok(create) => Box::pin(api::create(create)).await.map(|json| (201, json.into_bytes())),
        },
        Route::GetSession(id) => Box::pin(api::get(&id)).await.map(|json| (200, json.into_bytes())),
        Route::Append(id) => match session::parse_append(&req.body) {
            Err(e) => Err(e),
            // The answer is written straight into the response (no body of its own).
            Ok(append) => match api::append(id, append).await {
                Ok(ok) => return appended(&req, &ok, label),
                Err(e) => Err(e),
            },
        },
        Route::Events(id) => Box::pin(events_page(&req, &id)).await,
        Route::HealthLive => Ok((200, b"{\"status\":\"ok\"}".to_vec())),
        Route::HealthReady => match Box::pin(api::ready_all()).await {
            Ok(()) => Ok((200, b"{\"status\":\"ok\"}".to_vec())),
            Err(why) => {
                // `status` and `reason` are stable; `message` says which core or shard.
                let (status, reason) = why.status_and_reason();
                let mut body = String::from("{\"status\":");
                push_json_string(&mut body, status);
                body.push_str(",\"reason\":");
                push_json_string(&mut body, reason);
                body.push_str(",\"message\":");
                push_json_string(&mut body, &why.to_string());
                body.push('}');
                Ok((503, body.into_bytes()))
            }
        },
        Route::Metrics => {
            let text = crate::metrics::render(&Box::pin(api::stats_all()).await);
            let mut bytes = Vec::with_capacity(text.len() + 128);
            write_response(&mut bytes, req.version_minor, 200, &[], Some(prometheus::TEXT_FORMAT), text.as_bytes(), req.keep_alive);
            return Response { bytes, status: 200, route: label };
        }
        // docs/openapi.json is generated with docs/openapi.yaml (scripts/openapi.py).
        Route::OpenApi => Ok((200, OPENAPI_JSON.as_bytes().to_vec())),
        Route::Tail(_) => Err(ApiError::internal("tail requests are served by the tail module")),
    };
    match result {
        Ok((status, body)) => json(&req, status, &body, label),
        Err(e) => api_error(&req, &e, label),
    }
}

/// `201 {"seq","last_seq","deduped"}` for an append, formatted on the stack.
fn appended(req: &Request, ok: &crate::runtime::core::AppendOk, route: &'static str) -> Response {
    use std::io::Write;
    let mut body = [0u8; 96];
    let mut cursor = std::io::Cursor::new(&mut body[..]);
    // Two u64 and a bool need at most 80 bytes with the keys: the write cannot fail.
    let _ = write!(cursor, "{{\"seq\":{},\"last_seq\":{},\"deduped\":{}}}", ok.seq, ok.last_seq, ok.deduped);
    let len = cursor.position() as usize;
    json(req, 201, &body[..len], route)
}

/// The API's OpenAPI 3.1 description, served at `GET /v1/openapi.json`.
const OPENAPI_JSON: &str = include_str!("../../docs/openapi.json");

async fn events_page(req: &Request, id: &str) -> Result<(u16, Vec<u8>), ApiError> {
    let cursor = session::parse_cursor(req.query_param("cursor"))?;
    let limit = session::parse_limit(req.query_param("limit"))?;
    // The events' budget leaves room for the envelope, so the whole body stays within
    // PAGE_BYTES_MAX (unless one event alone is larger: a page is never empty).
    let page = api::read(id, cursor, limit, PAGE_BYTES_MAX - PAGE_ENVELOPE_BYTES).await?;
    let next_cursor = cursor + page.events.len() as u64;
    let size: usize = page.events.iter().map(|e| e.len() + 1).sum();
    let mut body = Vec::with_capacity(size + 64);
    body.extend_from_slice(b"{\"events\":[");
    for (i, e) in page.events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(e.as_bytes());
    }
    body.extend_from_slice(format!("],\"next_cursor\":{next_cursor},\"last_seq\":{}}}", page.last_seq).as_bytes());
    Ok((200, body))
}
