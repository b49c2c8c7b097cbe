//! Operations over websockets, and `billingEvents` rendered once per selection set.
//!
//! A subscribe message runs through the schema once, as async-graphql would run it
//! (parsing, validation, the query limits, the resolver's argument and access checks). A
//! `billingEvents` subscription then hands the caller's own event stream back (see
//! [`EventsMode::Open`]) instead of executing its selection set for every event: the
//! connection follows its events, filtered for its caller as before, and asks
//! [`EventFrames`] for each one's payload. That executes the selection set once per event
//! and distinct subscribe payload (query, operation name, variables) and shares the JSON
//! text among every subscriber that sent the same payload. Rendering sees no caller
//! (`Principal::Anonymous`): nothing of an event's output depends on who asks; which
//! events a subscriber gets is decided per subscriber before its payload is asked for.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use async_graphql::http::WebSocketProtocols;
use async_graphql::{Data, ErrorExtensions, Request, Response, ServerError, Variables};
use futures_util::StreamExt;
use tokio::sync::OnceCell;

use crate::billing::events::BillingEvent;
use crate::billing::{Billing, BillingError, Principal};
use crate::graphql::BillingSchema;
use crate::graphql::loaders::request_loaders;
use crate::graphql::subscription::{EventStream, EventsMode};

/// Payloads kept per selection set, the newest by sequence number: subscribers that many
/// events apart still share them (as many as the hub's channel holds batches, so a slow
/// subscriber that keeps up with the channel never renders alone); an event older than all
/// of them (read from the log to catch up) is rendered for its subscriber alone, without
/// pushing out what the others share.
const RECENT: usize = 1024;

/// The process's shared renders of events, by subscribe payload.
#[derive(Default)]
pub struct EventFrames {
    selections: Mutex<HashMap<SelectionKey, Weak<Selection>>>,
    renders: AtomicU64,
}

/// What makes two subscribers' payloads the same text.
#[derive(Clone, PartialEq, Eq, Hash)]
struct SelectionKey {
    query: String,
    operation_name: Option<String>,
    variables: String,
}

/// One subscribe payload's recent renders, held by the subscriptions that sent it (the
/// last one to end drops it).
pub struct Selection {
    key: SelectionKey,
    variables: Variables,
    recent: Mutex<BTreeMap<i64, Rendered>>,
}

/// An event's payload under one selection, once the first subscriber has rendered it.
type Rendered = Arc<OnceCell<Arc<str>>>;

impl EventFrames {
    /// Executions of a selection set for an event so far.
    pub fn renders(&self) -> u64 {
        self.renders.load(Ordering::Relaxed)
    }

    /// Selection sets with live subscribers.
    pub fn selections(&self) -> usize {
        let map = self.selections.lock().unwrap_or_else(|p| p.into_inner());
        map.values().filter(|w| w.strong_count() > 0).count()
    }

    fn selection(&self, request: &Request) -> Arc<Selection> {
        let key = SelectionKey {
            query: request.query.clone(),
            operation_name: request.operation_name.clone(),
            variables: serde_json::to_string(&request.variables).unwrap_or_default(),
        };
        let mut map = self.selections.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = map.get(&key).and_then(Weak::upgrade) {
            return s;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let s = Arc::new(Selection {
            key: key.clone(),
            variables: request.variables.clone(),
            recent: Mutex::new(BTreeMap::new()),
        });
        map.insert(key, Arc::downgrade(&s));
        s
    }

    /// The `payload` of a `next` message for `event` under `selection`: rendered by the
    /// first subscriber that asks, shared with the rest.
    pub async fn payload(
        &self,
        schema: &BillingSchema,
        billing: &Arc<Billing>,
        selection: &Selection,
        event: &BillingEvent,
    ) -> Arc<str> {
        let cell = {
            let mut recent = selection.recent.lock().unwrap_or_else(|p| p.into_inner());
            match recent.get(&event.seq) {
                Some(cell) => cell.clone(),
                None => {
                    let cell = Rendered::default();
                    let oldest = recent.first_key_value().map(|(seq, _)| *seq);
                    if recent.len() < RECENT || oldest.is_some_and(|o| o < event.seq) {
                        recent.insert(event.seq, cell.clone());
                        if recent.len() > RECENT {
                            recent.pop_first();
                        }
                    }
                    cell
                }
            }
        };
        cell.get_or_init(|| async {
            self.renders.fetch_add(1, Ordering::Relaxed);
            let mut request =
                Request::new(selection.key.query.clone()).variables(selection.variables.clone());
            if let Some(name) = &selection.key.operation_name {
                request = request.operation_name(name.clone());
            }
            request.data.insert(EventsMode::Render(event.clone()));
            request_loaders(billing, &mut request.data);
            let response = schema
                .execute_stream(request)
                .next()
                .await
                .unwrap_or_else(|| Response::new(async_graphql::Value::Null));
            json_text(&response)
        })
        .await
        .clone()
    }
}

fn json_text(response: &Response) -> Arc<str> {
    serde_json::to_string(response)
        .unwrap_or_else(|_| r#"{"data":null}"#.to_owned())
        .into()
}

/// What a subscribe message became.
pub enum Opened {
    /// A live `billingEvents` subscription.
    Events {
        events: EventStream,
        selection: Arc<Selection>,
    },
    /// Anything else (a query, a mutation, a refused subscription): its responses, then
    /// the operation is complete.
    Done(Vec<Response>),
}

/// Runs a subscribe message's operation for `principal` as async-graphql's websocket
/// would, except that a `billingEvents` subscription comes back as the caller's events.
pub async fn open(
    schema: BillingSchema,
    billing: Arc<Billing>,
    frames: Arc<EventFrames>,
    principal: Principal,
    mut request: Request,
) -> Opened {
    let selection = frames.selection(&request);
    let slot = Arc::new(Mutex::new(None));
    request.data.insert(EventsMode::Open(slot.clone()));
    let mut session = Data::default();
    session.insert(principal);
    request_loaders(&billing, &mut session);
    let responses: Vec<Response> = schema
        .execute_stream_with_session_data(request, Arc::new(session))
        .collect()
        .await;
    let events = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    match events {
        Some(events) if responses.is_empty() => Opened::Events { events, selection },
        _ => Opened::Done(responses),
    }
}

/// A `next` message (`data` in the legacy protocol) around a rendered payload.
pub fn next_frame(protocol: WebSocketProtocols, id: &str, payload: &str) -> String {
    let kind = match protocol {
        WebSocketProtocols::SubscriptionsTransportWS => "data",
        WebSocketProtocols::GraphQLWS => "next",
    };
    let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".to_owned());
    let mut frame = String::with_capacity(payload.len() + id.len() + 32);
    frame.push_str(r#"{"type":""#);
    frame.push_str(kind);
    frame.push_str(r#"","id":"#);
    frame.push_str(&id);
    frame.push_str(r#","payload":"#);
    frame.push_str(payload);
    frame.push('}');
    frame
}

pub fn next_response(protocol: WebSocketProtocols, id: &str, response: &Response) -> String {
    next_frame(protocol, id, &json_text(response))
}

/// A `complete` message, worded as the library words it.
pub fn complete_frame(id: &str) -> String {
    let id = serde_json::to_string(id).unwrap_or_else(|_| "\"\"".to_owned());
    format!(r#"{{"type":"complete","id":{id}}}"#)
}

/// A subscriber's event that could not be read (the log, while catching up): answered to
/// that subscriber alone, as the resolver's error would have been.
pub fn error_response(e: BillingError) -> Response {
    let e = e.extend();
    let mut err = ServerError::new(e.message, None);
    err.extensions = e.extensions;
    Response::from_errors(vec![err])
}
