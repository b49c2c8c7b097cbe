//! GraphQL over websockets (graphql-transport-ws), with the protocol's hygiene around
//! async-graphql's session: a connection must send `connection_init` in time (4408),
//! malformed messages close it (4400), subscribing before the ack is 4401, a refused
//! token or a key revoked while connected is 4403, a reused subscription id is 4409, a
//! connection holds a bounded number of subscriptions, and a shutdown closes with 1001.
//!
//! The library keeps the connection (init, ping, terminate); operations are run here
//! ([`super::ws_events`]), so that `billingEvents` is rendered once per selection set and
//! shared. Connections are served on a runtime of their own ([`serve_apart`]): fanning an
//! event out to every subscriber never queues HTTP requests behind it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_graphql::http::{WebSocketProtocols, WsMessage};
use async_graphql::{Data, ErrorExtensions, Request};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::future::BoxFuture;
use futures_util::stream::FuturesUnordered;
use futures_util::{FutureExt, SinkExt, StreamExt, future};
use serde_json::{Value, json};
use uuid::Uuid;

use super::AppState;
use super::ws_events::{self, Opened, Selection};
use crate::billing::{BillingError, Principal};
use crate::graphql::loaders::request_loaders;

/// Websocket limits, from configuration.
#[derive(Clone, Copy, Debug)]
pub struct WsLimits {
    pub init_timeout: Duration,
    pub max_subscriptions: usize,
}

/// Open websocket connections of this process.
#[derive(Default)]
pub struct OpenSockets(AtomicUsize);

impl OpenSockets {
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

struct Counted(Arc<OpenSockets>);

impl Counted {
    fn new(open: Arc<OpenSockets>) -> Self {
        open.0.fetch_add(1, Ordering::Relaxed);
        Counted(open)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the connection has shown so far, shared by the input filter and the output loop.
#[derive(Default)]
struct Session {
    acked: bool,
    active: HashSet<String>,
    key: Option<Uuid>,
    principal: Option<Principal>,
}

enum Verdict {
    Pass,
    /// An operation to run here, under its id.
    Subscribe(String, Box<Request>),
    /// The client ended an operation.
    Complete(String),
    /// Answered here (an error for one subscription); not passed on.
    Answer(String),
    Close(u16, &'static str),
}

fn judge(session: &Mutex<Session>, text: &[u8], max_subscriptions: usize) -> Verdict {
    let Ok(msg) = serde_json::from_slice::<Value>(text) else {
        return Verdict::Close(4400, "Invalid message received");
    };
    let Some(kind) = msg.get("type").and_then(Value::as_str) else {
        return Verdict::Close(4400, "Invalid message received");
    };
    let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
    match kind {
        // graphql-transport-ws; `start`/`stop` are the legacy protocol's names.
        "subscribe" | "start" => {
            let Some(id) = msg.get("id").and_then(Value::as_str) else {
                return Verdict::Close(4400, "Invalid message received");
            };
            if !s.acked {
                return Verdict::Close(4401, "Unauthorized");
            }
            if s.active.contains(id) {
                return Verdict::Close(4409, "Subscriber for this id already exists");
            }
            if s.active.len() >= max_subscriptions {
                let e = BillingError::LimitExceeded(format!(
                    "a connection may hold at most {max_subscriptions} subscriptions"
                ))
                .extend();
                let payload =
                    json!([{ "message": e.message, "extensions": { "code": "LIMIT_EXCEEDED" } }]);
                return Verdict::Answer(
                    json!({ "id": id, "type": "error", "payload": payload }).to_string(),
                );
            }
            let Some(Ok(request)) = msg
                .get("payload")
                .map(|p| serde_json::from_value::<Request>(p.clone()))
            else {
                return Verdict::Close(4400, "Invalid message received");
            };
            s.active.insert(id.to_owned());
            return Verdict::Subscribe(id.to_owned(), Box::new(request));
        }
        "complete" | "stop" => {
            if let Some(id) = msg.get("id").and_then(Value::as_str) {
                s.active.remove(id);
                return Verdict::Complete(id.to_owned());
            }
        }
        "connection_init" | "ping" | "pong" | "connection_terminate" => {}
        _ => return Verdict::Close(4400, "Invalid message received"),
    }
    Verdict::Pass
}

/// Notes what the server said: the ack, and subscriptions it ended.
fn observe(session: &Mutex<Session>, text: &str) {
    // Results, by far the most frames, change nothing: not parsed again (the library
    // writes the type first).
    if text.starts_with(r#"{"type":"next""#) || text.starts_with(r#"{"type":"data""#) {
        return;
    }
    let Ok(msg) = serde_json::from_str::<Value>(text) else {
        return;
    };
    let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
    match msg.get("type").and_then(Value::as_str) {
        Some("connection_ack") => s.acked = true,
        Some("complete" | "error") => {
            if let Some(id) = msg.get("id").and_then(Value::as_str) {
                s.active.remove(id);
            }
        }
        _ => {}
    }
}

/// A live `billingEvents` subscription of this connection.
struct Live {
    id: String,
    events: crate::graphql::subscription::EventStream,
    selection: Arc<Selection>,
}

type LiveItem = Option<crate::billing::BillingResult<crate::billing::events::BillingEvent>>;

/// The next event of any live subscription, with its index.
fn next_live(live: &mut [Live]) -> impl Future<Output = (usize, LiveItem)> + '_ {
    future::poll_fn(move |cx| {
        for (i, l) in live.iter_mut().enumerate() {
            if let std::task::Poll::Ready(item) = l.events.poll_next_unpin(cx) {
                return std::task::Poll::Ready((i, item));
            }
        }
        std::task::Poll::Pending
    })
}

/// Frames of ready events written at once, at most.
const MAX_FRAMES_PER_WRITE: usize = 64;

/// A subscribe message being run: its id, the generation of that id, and the outcome.
type Opening = BoxFuture<'static, (String, u64, Opened)>;

/// How much nicer (Linux: per thread) the websocket runtime's threads are than the
/// thread that starts them: when the CPUs are busy, a query or mutation runs before the
/// fan-out of its events, which catches up in the gaps.
const WS_NICENESS: i32 = 10;

/// Lowers the calling thread's CPU priority by [`WS_NICENESS`] (where the system has
/// per-thread niceness; elsewhere nothing happens).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getpriority and setpriority read no memory of ours; on Linux,
        // PRIO_PROCESS with `who` 0 is the calling thread.
        let rc = unsafe {
            let now = libc::getpriority(libc::PRIO_PROCESS, 0);
            libc::setpriority(libc::PRIO_PROCESS, 0, (now + WS_NICENESS).min(19))
        };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "websocket thread keeps its priority");
        }
    }
}

/// The process's runtime for websocket connections: one thread of its own beside the
/// HTTP workers, at a lower CPU priority, started with the first connection.
fn ws_runtime() -> Option<&'static tokio::runtime::Handle> {
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("billing-ws")
                .on_thread_start(lower_priority)
                .enable_all()
                .build()
                .map_err(|e| tracing::warn!(error = %e, "no websocket runtime: served inline"))
                .ok()
        })
        .as_ref()
        .map(tokio::runtime::Runtime::handle)
}

/// [`serve`] on the websocket runtime.
pub async fn serve_apart(state: AppState, protocol: WebSocketProtocols, socket: WebSocket) {
    match ws_runtime() {
        Some(rt) => {
            rt.spawn(serve(state, protocol, socket));
        }
        None => serve(state, protocol, socket).await,
    }
}

async fn stopping(shutdown: &mut tokio::sync::watch::Receiver<bool>) {
    if shutdown.wait_for(|stopping| *stopping).await.is_err() {
        // The server is gone without a shutdown: nothing to wait for.
        std::future::pending::<()>().await;
    }
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_owned().into(),
    }))
}

pub async fn serve(state: AppState, protocol: WebSocketProtocols, socket: WebSocket) {
    let _counted = Counted::new(state.sockets.clone());
    let limits = state.ws_limits;
    let billing = state.billing.clone();
    // Listen before the token is checked, so that no revocation falls in between.
    let mut revocations = billing.revocations();
    let mut shutdown = state.shutdown.clone();
    let session = Arc::new(Mutex::new(Session::default()));
    let (mut sink, stream) = socket.split();
    let (control_tx, mut control) = tokio::sync::mpsc::unbounded_channel::<Verdict>();

    let input = {
        let session = session.clone();
        stream
            .take_while(|res| future::ready(res.is_ok()))
            .filter_map(|res| future::ready(res.ok()))
            .filter_map(|msg| {
                future::ready(match msg {
                    Message::Text(t) => Some(Vec::from(t.as_bytes())),
                    Message::Binary(b) => Some(b.to_vec()),
                    _ => None,
                })
            })
            .map(
                move |bytes| match judge(&session, &bytes, limits.max_subscriptions) {
                    Verdict::Pass => Some(bytes),
                    other => {
                        let stop = matches!(other, Verdict::Close(..));
                        let _ = control_tx.send(other);
                        (!stop).then(Vec::new)
                    }
                },
            )
            .take_while(|m| future::ready(m.is_some()))
            .filter_map(|m| future::ready(m.filter(|b| !b.is_empty())))
    };

    let on_init = {
        let (billing, session) = (billing.clone(), session.clone());
        move |payload: Value| async move {
            let token = payload
                .get("Authorization")
                .or_else(|| payload.get("authorization"))
                .and_then(|v| v.as_str())
                .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).to_owned())
                .or_else(|| {
                    payload
                        .get("token")
                        .and_then(|v| v.as_str())
                        .map(str::to_owned)
                });
            let (principal, key) = billing
                .authenticate_key(token.as_deref())
                .await
                .map_err(|e| e.extend())?;
            if principal == Principal::Anonymous {
                return Err(BillingError::Unauthenticated.extend());
            }
            {
                let mut s = session.lock().unwrap_or_else(|p| p.into_inner());
                s.key = key;
                s.principal = Some(principal);
            }
            let mut data = Data::default();
            data.insert(principal);
            request_loaders(&billing, &mut data);
            Ok(data)
        }
    };

    let output = async_graphql::http::WebSocket::new(state.schema.clone(), input, protocol)
        .on_connection_init(on_init);
    futures_util::pin_mut!(output);
    let init_deadline = tokio::time::sleep(limits.init_timeout);
    futures_util::pin_mut!(init_deadline);
    let mut live: Vec<Live> = Vec::new();
    let mut opening: FuturesUnordered<Opening> = FuturesUnordered::new();
    // The generation of each id that is open or being opened.
    let mut ids: HashMap<String, u64> = HashMap::new();
    let mut generation = 0u64;
    let forget = |id: &str| {
        session
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .active
            .remove(id);
    };

    let last = loop {
        let acked = session.lock().unwrap_or_else(|p| p.into_inner()).acked;
        tokio::select! {
            biased;
            () = stopping(&mut shutdown) => break Some(close(1001, "Server shutting down")),
            revoked = revocations.recv() => {
                let mine = session.lock().unwrap_or_else(|p| p.into_inner()).key;
                let gone = match revoked {
                    Ok(key) => Some(key) == mine,
                    // Too many revocations at once to tell: ask again.
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        mine.is_some() && !Box::pin(billing.key_is_live(mine)).await
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => false,
                };
                if gone {
                    break Some(close(4403, "Forbidden"));
                }
            }
            verdict = control.recv() => match verdict {
                Some(Verdict::Answer(text)) => {
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                }
                Some(Verdict::Close(code, reason)) => break Some(close(code, reason)),
                Some(Verdict::Subscribe(id, request)) => {
                    let principal = session
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .principal
                        .unwrap_or(Principal::Anonymous);
                    generation += 1;
                    ids.insert(id.clone(), generation);
                    let run = ws_events::open(
                        state.schema.clone(),
                        billing.clone(),
                        state.event_frames.clone(),
                        principal,
                        *request,
                    );
                    let g = generation;
                    opening.push(run.map(move |opened| (id, g, opened)).boxed());
                }
                Some(Verdict::Complete(id)) => {
                    // As the library did: a known operation is acknowledged as complete.
                    if ids.remove(&id).is_some() {
                        live.retain(|l| l.id != id);
                        let frame = ws_events::complete_frame(&id);
                        if sink.send(Message::Text(frame.into())).await.is_err() {
                            break None;
                        }
                    }
                }
                Some(Verdict::Pass) | None => {}
            },
            Some((id, g, opened)) = opening.next(), if !opening.is_empty() => {
                // Ended (or its id reused) while it was being opened.
                if ids.get(&id) != Some(&g) {
                    continue;
                }
                match opened {
                    Opened::Events { events, selection } => {
                        live.push(Live { id, events, selection });
                    }
                    Opened::Done(responses) => {
                        ids.remove(&id);
                        forget(&id);
                        let mut gone = false;
                        for r in &responses {
                            let frame = ws_events::next_response(protocol, &id, r);
                            gone = gone || sink.send(Message::Text(frame.into())).await.is_err();
                        }
                        let frame = ws_events::complete_frame(&id);
                        if gone || sink.send(Message::Text(frame.into())).await.is_err() {
                            break None;
                        }
                    }
                }
            }
            ready = next_live(&mut live), if !live.is_empty() => {
                // Everything that is ready goes out in one write: a batch of events is
                // one syscall per subscriber, not one per event.
                let mut ready = Some(ready);
                let mut fed = 0;
                let mut sent = true;
                while let Some((i, item)) = ready.take() {
                    let frame = match item {
                        Some(Ok(event)) => {
                            let selection = live[i].selection.clone();
                            let payload = state
                                .event_frames
                                .payload(&state.schema, &billing, &selection, &event)
                                .await;
                            ws_events::next_frame(protocol, &live[i].id, &payload)
                        }
                        Some(Err(e)) => ws_events::next_response(
                            protocol,
                            &live[i].id,
                            &ws_events::error_response(e),
                        ),
                        None => {
                            let l = live.swap_remove(i);
                            ids.remove(&l.id);
                            forget(&l.id);
                            ws_events::complete_frame(&l.id)
                        }
                    };
                    if sink.feed(Message::Text(frame.into())).await.is_err() {
                        sent = false;
                        break;
                    }
                    fed += 1;
                    if fed < MAX_FRAMES_PER_WRITE && !live.is_empty() {
                        ready = next_live(&mut live).now_or_never();
                    }
                }
                if !sent || sink.flush().await.is_err() {
                    break None;
                }
            }
            () = &mut init_deadline, if !acked => {
                break Some(close(4408, "Connection initialisation timeout"));
            }
            msg = output.next() => match msg {
                Some(WsMessage::Text(text)) => {
                    observe(&session, &text);
                    if sink.send(Message::Text(text.into())).await.is_err() {
                        break None;
                    }
                }
                Some(WsMessage::Close(code, reason)) => {
                    let acked = session.lock().unwrap_or_else(|p| p.into_inner()).acked;
                    // The library's codes, as graphql-transport-ws names them.
                    let code = match code {
                        1002 if !acked => 4403,
                        1002 => 4400,
                        1011 => 4401,
                        other => other,
                    };
                    break Some(close(code, &reason));
                }
                // The client went away, or closed a message our filter refused.
                None => break control.try_recv().ok().and_then(|v| match v {
                    Verdict::Close(code, reason) => Some(close(code, reason)),
                    _ => None,
                }),
            },
        }
    };
    if let Some(frame) = last {
        let _ = sink.send(frame).await;
    }
    let _ = sink.close().await;
}
