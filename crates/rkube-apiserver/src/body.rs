//! Request bodies: read only for requests that are authenticated and authorized, within
//! [`BODY_BYTES_MAX`](crate::BODY_BYTES_MAX), a deadline, and a budget of memory shared by
//! every request, so no number of connections can make the server hold more than
//! [`BODY_MEMORY_MAX`] bytes of bodies. Memory is taken as bytes arrive (a client holds
//! only what it has really sent), each user at most [`BODY_MEMORY_PER_USER_MAX`] of it,
//! and a body that stops arriving for [`BODY_IDLE_TIMEOUT`] is refused; `system:masters`
//! is outside the budget, as it is outside the in-flight limits, so the admin is never
//! refused. Large bodies are also decoded a few at a time ([`LARGE_BODIES_MAX`]): a
//! decoded value takes many times its text.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::HeaderMap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rkube_api::{ApiError, ApiResult};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The most body bytes held by all requests together.
pub const BODY_MEMORY_MAX: usize = 256 << 20;
/// The most body bytes one user's requests hold together.
pub const BODY_MEMORY_PER_USER_MAX: usize = BODY_MEMORY_MAX / 4;
/// How long a client may take to send a body (kube-apiserver's request timeout).
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a body may stop arriving.
pub const BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Bodies at least this large count as large.
pub const LARGE_BODY_BYTES: usize = 256 << 10;
/// Requests with large bodies handled at once (others wait for a turn).
pub const LARGE_BODIES_MAX: usize = 4;
/// What is read and thrown away of the body of a refused request, so a client that sends
/// its whole body before reading the answer still sees the answer (Go's net/http does
/// the same, up to 256 KiB). An authorized request whose body is too large is drained
/// further, so its client sees the 413 rather than a reset stream.
pub const DRAIN_BYTES: usize = 256 << 10;
pub const DRAIN_AUTHORIZED_BYTES: usize = 64 << 20;
const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a body waits for room in the budget before the request is refused (429).
const BUDGET_WAIT: Duration = Duration::from_secs(10);
/// Taken before the first byte (and all of a smaller declared body).
const FIRST_SHARE: usize = 64 << 10;

/// Body bytes held per user.
type PerUser = Arc<Mutex<HashMap<String, usize>>>;

/// The memory all bodies share, and each user's part of it.
pub struct Budget {
    total: Arc<Semaphore>,
    per_user: PerUser,
    large: Arc<Semaphore>,
}

impl Default for Budget {
    fn default() -> Self {
        Budget {
            total: Arc::new(Semaphore::new(BODY_MEMORY_MAX)),
            per_user: Default::default(),
            large: Arc::new(Semaphore::new(LARGE_BODIES_MAX)),
        }
    }
}

/// What one body holds of the budget; given back when dropped.
struct Held {
    total: Option<OwnedSemaphorePermit>,
    user: Option<(String, PerUser)>,
    bytes: usize,
    large: Option<OwnedSemaphorePermit>,
}

impl Drop for Held {
    fn drop(&mut self) {
        if let Some((user, per_user)) = &self.user {
            let mut m = per_user.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(n) = m.get_mut(user) {
                *n = n.saturating_sub(self.bytes);
                if *n == 0 {
                    m.remove(user);
                }
            }
        }
    }
}

impl Budget {
    /// Takes `n` more bytes for `held` (its user's part first, at once; then the total,
    /// waiting up to [`BUDGET_WAIT`]).
    async fn take(&self, held: &mut Held, n: usize) -> ApiResult<()> {
        let busy = || ApiError::too_many_requests("Too many requests, please try again later.");
        if let Some((user, per_user)) = &held.user {
            let mut m = per_user.lock().unwrap_or_else(|e| e.into_inner());
            let have = m.entry(user.clone()).or_default();
            if *have + n > BODY_MEMORY_PER_USER_MAX {
                return Err(busy());
            }
            *have += n;
            held.bytes += n;
        }
        let n32 = u32::try_from(n).map_err(|_| ApiError::too_large(crate::BODY_BYTES_MAX))?;
        let more = match tokio::time::timeout(BUDGET_WAIT, self.total.clone().acquire_many_owned(n32)).await {
            Ok(Ok(p)) => p,
            _ => return Err(busy()),
        };
        match &mut held.total {
            Some(p) => p.merge(more),
            None => held.total = Some(more),
        }
        Ok(())
    }
}

/// A body read into memory, with its share of the budget (given back when dropped).
pub struct Read {
    pub bytes: Bytes,
    _held: Held,
}

/// Reads a whole body for `user` (None: `system:masters`, outside the budget). Refused: a
/// declared or actual length over the limit (413, as kube-apiserver), a client too slow to
/// send it (408), no memory left for it by the deadline (429).
pub async fn read(budget: &Budget, user: Option<&str>, headers: &HeaderMap, body: &mut Incoming) -> ApiResult<Read> {
    let limit = crate::BODY_BYTES_MAX;
    use http_body::Body as _;
    let declared = if body.is_end_stream() {
        Some(0)
    } else {
        headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .or(body.size_hint().exact())
    };
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(ApiError::too_large(limit));
    }
    // A small body (declared, so it cannot grow) takes only from the total: each user's
    // part matters for what is large.
    let small = declared.is_some_and(|n| n as usize <= FIRST_SHARE);
    let owner = user.filter(|_| !small).map(|u| (u.to_string(), budget.per_user.clone()));
    let mut held = Held { total: None, user: owner, bytes: 0, large: None };
    if user.is_some() {
        let first = declared.map_or(FIRST_SHARE, |n| (n as usize).min(FIRST_SHARE));
        budget.take(&mut held, first).await?;
    }
    let timeout = || {
        ApiError::new(
            408,
            "Timeout",
            format!("the request body was not received within {}s", BODY_READ_TIMEOUT.as_secs()),
        )
    };
    let read = read_within(budget, &mut held, user.is_some(), declared, body, limit);
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => return Err(e),
        Err(_) => return Err(timeout()),
    };
    // A large body is handled (decoded, patched, stored) a few at a time: its decoded form
    // takes many times its text. Taken once received, so slow uploads hold no turn.
    if bytes.len() >= LARGE_BODY_BYTES {
        held.large = match tokio::time::timeout(BUDGET_WAIT, budget.large.clone().acquire_owned()).await {
            Ok(Ok(p)) => Some(p),
            _ if user.is_none() => None,
            _ => return Err(ApiError::too_many_requests("Too many requests, please try again later.")),
        };
    }
    Ok(Read { bytes, _held: held })
}

async fn read_within(
    budget: &Budget,
    held: &mut Held,
    charged: bool,
    declared: Option<u64>,
    body: &mut Incoming,
    limit: usize,
) -> ApiResult<Bytes> {
    let mut buf = BytesMut::with_capacity(declared.unwrap_or(0).min(FIRST_SHARE as u64) as usize);
    let mut have = if charged { held.total.as_ref().map_or(0, |p| p.num_permits()) } else { usize::MAX };
    loop {
        let frame = match tokio::time::timeout(BODY_IDLE_TIMEOUT, body.frame()).await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(_) => {
                return Err(ApiError::new(
                    408,
                    "Timeout",
                    format!("no part of the request body arrived for {}s", BODY_IDLE_TIMEOUT.as_secs()),
                ))
            }
        };
        let frame = frame.map_err(|e| ApiError::bad_request(format!("error reading request body: {e}")))?;
        let Ok(data) = frame.into_data() else { continue };
        if buf.len() + data.len() > limit {
            return Err(ApiError::too_large(limit));
        }
        if buf.len() + data.len() > have {
            let more = (buf.len() + data.len() - have).max(FIRST_SHARE).min(limit - have.min(limit));
            budget.take(held, more).await?;
            have += more;
        }
        buf.extend_from_slice(&data);
    }
    Ok(buf.freeze())
}

/// Reads and drops what is left of a refused request's body, up to `max` bytes.
pub async fn drain(mut body: Incoming, max: usize) {
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, async {
        let mut seen = 0usize;
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                seen += data.len();
                if seen > max {
                    break;
                }
            }
        }
    })
    .await;
}
