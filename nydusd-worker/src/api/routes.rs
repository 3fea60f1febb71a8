//! Request → daemon call → reply. Paths, methods, query names, status codes
//! and the `{"code", "message"}` error body follow upstream (reference §6).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, CONTENT_TYPE, SERVER};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::Value;
use tokio::sync::Mutex;

use nydus_protocol::api::MountCmd;

use super::body;
use super::{ApiError, DaemonControl};
use crate::metrics::MetricsError;

/// Config files are a few KiB; anything near this is not a real request.
const MAX_BODY: usize = 4 << 20;

/// State shared by all connections of one server.
pub(super) struct Shared {
    pub(super) control: Arc<dyn DaemonControl>,
    /// Serializes calls that change the daemon, as upstream does, while
    /// reads (info, metrics) go on beside a slow mount.
    pub(super) serial: Mutex<()>,
    /// Values accepted by `PUT /api/v1/config`, per id ("" for none).
    pub(super) config_store: std::sync::Mutex<BTreeMap<String, BTreeMap<String, String>>>,
}

/// A successful reply: a JSON body (200) or none (204).
enum Reply {
    Json(Value),
    /// Prometheus text exposition.
    Text(String),
    Empty,
}

type Reqd = (Method, String, Vec<(String, String)>, Bytes);

pub(super) async fn handle(
    shared: Arc<Shared>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, incoming) = req.into_parts();
    let path = parts.uri.path().to_string();
    let method = parts.method;
    let query: Vec<(String, String)> = parts
        .uri
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let result = match Limited::new(incoming, MAX_BODY).collect().await {
        Ok(b) => dispatch(&shared, (method.clone(), path.clone(), query, b.to_bytes())).await,
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            413,
            format!("PayloadTooLarge: request body over {MAX_BODY} bytes"),
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "BadRequest: reading body: {e}"
        ))),
    };
    let (status, body) = match result {
        Ok(Reply::Text(text)) => return Ok(text_response(text)),
        Ok(Reply::Json(v)) => (200, Some(v)),
        Ok(Reply::Empty) => (204, None),
        Err(e) => {
            // A failed mount or umount belongs in the daemon's log too;
            // messages are secret-free by contract (ApiError).
            if e.status >= 500 && e.status != 501 {
                log::warn!("API {method} {path}: {}", e.message);
            }
            (e.status, Some(e.body()))
        }
    };
    log::debug!("API {method} {path} -> {status}");
    Ok(response(status, body))
}

fn response(status: u16, body: Option<Value>) -> Response<Full<Bytes>> {
    let bytes = body
        .map(|v| Bytes::from(serde_json::to_vec(&v).unwrap_or_default()))
        .unwrap_or_default();
    let mut resp = Response::new(Full::new(bytes));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = resp.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(SERVER, HeaderValue::from_static("Nydus API"));
    resp
}

fn text_response(text: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(text)));
    let h = resp.headers_mut();
    h.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    h.insert(SERVER, HeaderValue::from_static("Nydus API"));
    resp
}

fn query<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn required<'a>(q: &'a [(String, String)], name: &str) -> Result<&'a str, ApiError> {
    query(q, name).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::bad_request(format!(
            "QueryString: '{name}' should be specified in query string"
        ))
    })
}

fn no_body(body: &Bytes) -> Result<(), ApiError> {
    if body.is_empty() {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "BadRequest: this request takes no body",
        ))
    }
}

fn metrics_err(e: MetricsError) -> ApiError {
    ApiError::not_found(format!("Metrics: {e}"))
}

/// Runs a daemon call on the blocking pool (it may wait on disk, network or
/// daemon locks) so the one runtime thread keeps serving other requests.
async fn blocking<T, F>(shared: &Arc<Shared>, serialize: bool, f: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&dyn DaemonControl) -> Result<T, ApiError> + Send + 'static,
{
    let _guard = if serialize {
        Some(shared.serial.lock().await)
    } else {
        None
    };
    let control = shared.control.clone();
    tokio::task::spawn_blocking(move || f(control.as_ref()))
        .await
        .unwrap_or_else(|_| {
            Err(ApiError::internal(
                "the daemon failed while handling the request",
            ))
        })
}

fn unit(r: Result<(), ApiError>) -> Result<Reply, ApiError> {
    r.map(|()| Reply::Empty)
}

async fn dispatch(shared: &Arc<Shared>, (method, path, q, body): Reqd) -> Result<Reply, ApiError> {
    use Method as M;
    let metrics = shared.control.metrics();
    let id = query(&q, "id");
    match (path.as_str(), &method) {
        ("/api/v1/daemon" | "/api/v2/daemon", &M::GET) => {
            let v2 = path.starts_with("/api/v2");
            let mut info = blocking(shared, false, |c| Ok(c.info())).await?;
            if v2 {
                if let Some(o) = info.as_object_mut() {
                    o.insert("backend_collection".into(), Value::Null);
                }
            }
            Ok(Reply::Json(info))
        }
        ("/api/v1/daemon" | "/api/v2/daemon", &M::PUT) => {
            let level = body::log_level(&body)?;
            unit(blocking(shared, false, move |c| c.set_log_level(level)).await)
        }
        ("/api/v1/daemon/events", &M::GET) => Ok(Reply::Json(metrics.events().to_json())),
        ("/api/v1/daemon/backend", &M::GET) => {
            let mp = required(&q, "mountpoint")?.to_string();
            let v = blocking(shared, false, move |c| c.backend_info(&mp)).await?;
            Ok(Reply::Json(v))
        }
        ("/api/v1/daemon/exit", &M::PUT) => {
            no_body(&body)?;
            unit(
                blocking(shared, true, |c| {
                    c.exit();
                    Ok(())
                })
                .await,
            )
        }
        ("/api/v1/daemon/start", &M::PUT) => {
            no_body(&body)?;
            unit(blocking(shared, true, |c| c.start()).await)
        }
        ("/api/v1/daemon/fuse/sendfd", &M::PUT) => {
            no_body(&body)?;
            unit(blocking(shared, true, |c| c.sendfd()).await)
        }
        ("/api/v1/daemon/fuse/takeover", &M::PUT) => {
            no_body(&body)?;
            unit(blocking(shared, true, |c| c.takeover()).await)
        }
        ("/api/v1/mount", &M::POST) => {
            let mp = required(&q, "mountpoint")?.to_string();
            let cmd: MountCmd = body::parse_json(&body)?;
            unit(
                blocking(shared, true, move |c| {
                    c.mount(
                        &mp,
                        &cmd.source,
                        &cmd.fs_type,
                        &cmd.config,
                        cmd.prefetch_files,
                    )
                })
                .await,
            )
        }
        ("/api/v1/mount", &M::PUT) => {
            let mp = required(&q, "mountpoint")?.to_string();
            let cmd: MountCmd = body::parse_json(&body)?;
            unit(
                blocking(shared, true, move |c| {
                    c.remount(&mp, &cmd.source, &cmd.config)
                })
                .await,
            )
        }
        ("/api/v1/mount", &M::DELETE) => {
            let mp = required(&q, "mountpoint")?.to_string();
            no_body(&body)?;
            unit(blocking(shared, true, move |c| c.umount(&mp)).await)
        }
        ("/metrics", &M::GET) => Ok(Reply::Text(crate::metrics::prometheus::render(metrics))),
        ("/api/v1/metrics", &M::GET) => metrics.fs_json(id).map(Reply::Json).map_err(metrics_err),
        ("/api/v1/metrics/files", &M::GET) => {
            let latest = match query(&q, "latest") {
                None | Some("false") => false,
                Some("true") => true,
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "QueryString: 'latest' must be true or false",
                    ))
                }
            };
            metrics
                .files_json(id, latest)
                .map(Reply::Json)
                .map_err(metrics_err)
        }
        ("/api/v1/metrics/pattern", &M::GET) => metrics
            .pattern_json(id)
            .map(Reply::Json)
            .map_err(metrics_err),
        ("/api/v1/metrics/backend", &M::GET) => metrics
            .backend_json(id)
            .map(Reply::Json)
            .map_err(metrics_err),
        ("/api/v1/metrics/blobcache", &M::GET) => metrics
            .blobcache_json(id)
            .map(Reply::Json)
            .map_err(metrics_err),
        ("/api/v1/metrics/inflight", &M::GET) => {
            let ops = blocking(shared, false, |c| c.inflight()).await?;
            if ops.is_empty() {
                Ok(Reply::Empty)
            } else {
                Ok(Reply::Json(serde_json::to_value(ops).unwrap_or_default()))
            }
        }
        ("/api/v1/config", &M::GET) => {
            let store = shared
                .config_store
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            let values = store.get(id.unwrap_or("")).cloned().unwrap_or_default();
            Ok(Reply::Json(body::redacted_config(values)))
        }
        ("/api/v1/config", &M::PUT) => {
            let items = body::config_items(&body)?;
            let key_id = id.unwrap_or("").to_string();
            let owned_id = id.map(str::to_string);
            let to_apply = items.clone();
            blocking(shared, true, move |c| {
                to_apply
                    .iter()
                    .try_for_each(|(k, v)| c.set_config(owned_id.as_deref(), k, v))
            })
            .await?;
            let mut store = shared
                .config_store
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            store.entry(key_id).or_default().extend(items);
            Ok(Reply::Empty)
        }
        ("/api/v2/blobs", _) => Err(ApiError::unsupported(
            "/api/v2/blobs (only the fscache singleton daemon has blobs)",
        )),
        (p, _) if is_route(p) => Err(ApiError::bad_request(format!(
            "BadRequest: method {method} is not allowed on {p}"
        ))),
        _ => Err(ApiError::not_found("NoRoute")),
    }
}

/// Known paths, so a wrong method gets 400 rather than 404.
fn is_route(p: &str) -> bool {
    const ROUTES: &[&str] = &[
        "/api/v1/daemon",
        "/api/v2/daemon",
        "/api/v1/daemon/events",
        "/api/v1/daemon/backend",
        "/api/v1/daemon/exit",
        "/api/v1/daemon/start",
        "/api/v1/daemon/fuse/sendfd",
        "/api/v1/daemon/fuse/takeover",
        "/api/v1/mount",
        "/api/v1/metrics",
        "/api/v1/metrics/files",
        "/api/v1/metrics/pattern",
        "/api/v1/metrics/backend",
        "/api/v1/metrics/blobcache",
        "/api/v1/metrics/inflight",
        "/api/v1/config",
        "/metrics",
    ];
    ROUTES.contains(&p)
}
