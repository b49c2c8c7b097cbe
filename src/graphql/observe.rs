//! Measures and logs every GraphQL operation (HTTP, and queries and mutations over
//! websockets; subscriptions are long-lived and not timed): the latency histogram by
//! operation name and outcome, and the request log line.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextPrepareRequest, NextRequest,
};
use async_graphql::{Request, Response, ServerResult, Value};

use crate::telemetry;

pub struct Observe;

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Observed::default())
    }
}

#[derive(Default)]
struct Observed {
    /// Timed by `request` (a query over HTTP); otherwise `execute` times it (websockets).
    timed: AtomicBool,
    operation: Mutex<Option<String>>,
}

impl Observed {
    fn set_operation(&self, name: Option<&str>) {
        *self.operation.lock().unwrap_or_else(|p| p.into_inner()) = name.map(str::to_owned);
    }

    fn finish(&self, started: Instant, response: &Response) {
        let operation = self
            .operation
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        telemetry::graphql_request(
            operation.as_deref(),
            &outcome(response),
            started.elapsed(),
            None,
        );
    }
}

/// `ok`, or the first error's code (errors without one come from validating the document,
/// and are answered as `BAD_USER_INPUT`).
pub fn outcome(response: &Response) -> String {
    let Some(err) = response.errors.first() else {
        return "ok".to_owned();
    };
    match err.extensions.as_ref().and_then(|e| e.get("code")) {
        Some(Value::String(code)) => code.clone(),
        Some(Value::Enum(code)) => code.to_string(),
        _ => "BAD_USER_INPUT".to_owned(),
    }
}

#[async_trait::async_trait]
impl Extension for Observed {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        self.timed.store(true, Ordering::Relaxed);
        let started = Instant::now();
        let response = next.run(ctx).await;
        self.finish(started, &response);
        response
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        // What the client named, until the document says which operation runs.
        self.set_operation(request.operation_name.as_deref());
        next.run(ctx, request).await
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        self.set_operation(operation_name);
        if self.timed.load(Ordering::Relaxed) {
            return next.run(ctx, operation_name).await;
        }
        let started = Instant::now();
        let response = next.run(ctx, operation_name).await;
        self.finish(started, &response);
        response
    }
}
