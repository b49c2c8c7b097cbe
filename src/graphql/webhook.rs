//! Outbound webhook endpoints and their deliveries (admin).

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::context::ContextExt;
use super::enums::{BillingEventKind, WebhookDeliveryStatus};
use super::error::{GqlResult, uuid};
use crate::billing::BillingError;
use crate::billing::outbound_webhooks::{
    NewWebhookEndpoint, WebhookAttempt as AttemptModel, WebhookDelivery as DeliveryModel,
    WebhookEndpoint as EndpointModel,
};

/// Where a project's backend receives billing events, signed as Standard Webhooks.
pub struct WebhookEndpoint(pub EndpointModel);

#[Object]
impl WebhookEndpoint {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn url(&self) -> &str {
        &self.0.url
    }
    /// The kinds it receives; null: every kind, also kinds added later.
    async fn event_kinds(&self) -> Option<Vec<BillingEventKind>> {
        self.0
            .event_kinds
            .as_ref()
            .map(|k| k.iter().map(|&k| k.into()).collect())
    }
    /// A disabled endpoint is sent nothing, and gets no deliveries for events meanwhile.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
}

/// A new endpoint and its signing secret (`whsec_…`), shown this once.
#[derive(SimpleObject)]
pub struct WebhookEndpointSecret {
    pub endpoint: WebhookEndpoint,
    pub secret: String,
}

/// One event for one endpoint.
pub struct WebhookDelivery(pub DeliveryModel);

#[Object]
impl WebhookDelivery {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn endpoint_id(&self) -> ID {
        ID(self.0.endpoint_id.to_string())
    }
    /// Also the `webhook-id` header of every attempt.
    async fn event_id(&self) -> ID {
        ID(self.0.event_id.to_string())
    }
    /// The event's cursor in `billingEvents`.
    async fn event_cursor(&self) -> String {
        self.0.event_seq.to_string()
    }
    async fn event_kind(&self) -> BillingEventKind {
        self.0.event_kind.into()
    }
    async fn customer_id(&self) -> ID {
        ID(self.0.customer_id.to_string())
    }
    async fn status(&self) -> WebhookDeliveryStatus {
        self.0.status.into()
    }
    async fn attempt_count(&self) -> i32 {
        self.0.attempt_count
    }
    /// When it is due next (by the billing clock); null once accepted or given up on.
    async fn next_attempt_at(&self) -> Option<DateTime<Utc>> {
        self.0.next_attempt_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// Every attempt, oldest first.
    async fn attempts(&self) -> Vec<WebhookAttempt> {
        self.0.attempts.iter().map(WebhookAttempt::from).collect()
    }
}

/// One request of a delivery.
#[derive(SimpleObject)]
pub struct WebhookAttempt {
    pub number: i32,
    pub at: DateTime<Utc>,
    /// The receiver's HTTP status; null when none came.
    pub http_status: Option<i32>,
    /// Why no answer came (a timeout, a refused connection, …).
    pub error: Option<String>,
    pub duration_ms: i32,
}

impl From<&AttemptModel> for WebhookAttempt {
    fn from(a: &AttemptModel) -> Self {
        WebhookAttempt {
            number: a.number,
            at: a.at,
            http_status: a.http_status,
            error: a.error.clone(),
            duration_ms: i32::try_from(a.duration_ms).unwrap_or(i32::MAX),
        }
    }
}

#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    /// An absolute http or https URL.
    pub url: String,
    /// The kinds to receive; leave it out for every kind. An empty list is refused.
    pub event_kinds: Option<Vec<BillingEventKind>>,
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    /// Admin: the webhook endpoints, oldest first (never their secrets).
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<WebhookEndpoint>> {
        let found = ctx
            .billing()?
            .webhook_endpoints(&ctx.principal())
            .await
            .gql()?;
        Ok(found.into_iter().map(WebhookEndpoint).collect())
    }

    /// Admin: an endpoint's deliveries, newest event first, with their attempts.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> async_graphql::Result<Connection<String, WebhookDelivery, EmptyFields, EmptyFields>> {
        let first = usize::try_from(first.unwrap_or(20))
            .map_err(|_| BillingError::invalid("first must not be negative"))
            .gql()?;
        let page = ctx
            .billing()?
            .webhook_deliveries(
                &ctx.principal(),
                uuid("endpointId", &endpoint_id)?,
                first,
                after.as_deref(),
            )
            .await
            .gql()?;
        let mut conn = Connection::new(after.is_some(), page.has_next);
        conn.edges.extend(
            page.deliveries
                .into_iter()
                .map(|d| Edge::new(d.event_seq.to_string(), WebhookDelivery(d))),
        );
        Ok(conn)
    }
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    /// Admin: a new endpoint, sent the events recorded from now on; its secret is shown
    /// only in this answer.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> async_graphql::Result<WebhookEndpointSecret> {
        let issued = ctx
            .billing()?
            .create_webhook_endpoint(
                &ctx.principal(),
                NewWebhookEndpoint {
                    url: input.url,
                    event_kinds: input
                        .event_kinds
                        .map(|k| k.into_iter().map(Into::into).collect()),
                },
            )
            .await
            .gql()?;
        Ok(WebhookEndpointSecret {
            endpoint: WebhookEndpoint(issued.endpoint),
            secret: issued.secret,
        })
    }

    /// Admin: stops sending to the endpoint; its queued deliveries wait.
    async fn disable_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookEndpoint> {
        let e = ctx
            .billing()?
            .set_webhook_endpoint_enabled(&ctx.principal(), uuid("id", &id)?, false)
            .await
            .gql()?;
        Ok(WebhookEndpoint(e))
    }

    /// Admin: resumes sending to the endpoint.
    async fn enable_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookEndpoint> {
        let e = ctx
            .billing()?
            .set_webhook_endpoint_enabled(&ctx.principal(), uuid("id", &id)?, true)
            .await
            .gql()?;
        Ok(WebhookEndpoint(e))
    }

    /// Admin: deletes the endpoint with its deliveries; returns its id.
    async fn delete_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<ID> {
        ctx.billing()?
            .delete_webhook_endpoint(&ctx.principal(), uuid("id", &id)?)
            .await
            .gql()?;
        Ok(id)
    }

    /// Admin: sends a delivery again (queued at once, with a fresh set of attempts).
    async fn replay_webhook_delivery(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookDelivery> {
        let d = ctx
            .billing()?
            .replay_webhook_delivery(&ctx.principal(), uuid("id", &id)?)
            .await
            .gql()?;
        Ok(WebhookDelivery(d))
    }
}
