//! Provider news in: signed webhooks (and events a provider's own page hands over) are
//! stored once by id and applied; payment outcomes end in `apply_outcome` (checkout.rs),
//! which moves a checkout, and through the lifecycle its subscription, only forward.

use axum::http::HeaderMap;
use chrono::TimeDelta;
use entity::{checkout, provider_customer, provider_event};
use providers::{ProviderEvent, ProviderEventKind};
use sea_orm::{ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde_json::json;
use uuid::Uuid;

use super::Billing;
use super::codes::{CloseReason, EventKind};
use super::error::{BillingError, BillingResult};
use super::events::record;

/// The reconciler's spacing: 1, 2, 4, … minutes, at most an hour.
pub fn next_check(checks: i32) -> TimeDelta {
    TimeDelta::minutes(1i64 << checks.clamp(0, 6)).min(TimeDelta::hours(1))
}

impl Billing {
    /// A webhook delivery: verified by its provider, stored once per event id, applied.
    /// Returns how many events were new.
    pub async fn handle_webhook(
        &self,
        provider: &str,
        headers: &HeaderMap,
        body: &[u8],
    ) -> BillingResult<usize> {
        let p = self
            .providers
            .get(provider)
            .map_err(|_| BillingError::not_found("payment provider", provider))?;
        let events = p.verify_webhook(headers, body)?;
        self.apply_provider_events(p.name(), events).await
    }

    /// Verified provider events (from a webhook, or handed over by a provider's own page),
    /// each stored once by its id and applied. Returns how many were new.
    pub async fn apply_provider_events(
        &self,
        provider: &str,
        events: Vec<ProviderEvent>,
    ) -> BillingResult<usize> {
        let mut fresh = 0;
        for ev in events {
            if self.apply_provider_event(provider, ev).await? {
                fresh += 1;
            }
        }
        Ok(fresh)
    }

    async fn apply_provider_event(&self, provider: &str, ev: ProviderEvent) -> BillingResult<bool> {
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let first_time = provider_event::ActiveModel {
            provider: Set(provider.to_owned()),
            event_id: Set(ev.id.clone()),
            received_at: Set(now),
        }
        .insert(&*txn)
        .await;
        match first_time {
            Ok(_) => {}
            // Delivered before: nothing changes.
            Err(e)
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(e.into()),
        }
        let mut refund_queued = false;
        let mut closed = Vec::new();
        match (&ev.kind, &ev.outcome) {
            (ProviderEventKind::Checkout, Some(outcome)) => {
                match self.checkout_by_ref(&txn, provider, &ev.object_ref).await? {
                    Some(c) => refund_queued = self.apply_outcome(&txn, c, outcome).await?,
                    None => tracing::warn!(
                        provider,
                        object = ev.object_ref,
                        "webhook for an unknown checkout"
                    ),
                }
            }
            (ProviderEventKind::CheckoutAbandoned, _) => {
                match self.checkout_by_ref(&txn, provider, &ev.object_ref).await? {
                    Some(c) => {
                        closed = self
                            .close_checkout_in(&txn, now, &c, CloseReason::Abandoned)
                            .await?;
                    }
                    None => tracing::warn!(
                        provider,
                        object = ev.object_ref,
                        "abandon for an unknown checkout"
                    ),
                }
            }
            (ProviderEventKind::PaymentMethodUpdated, _) => {
                if let Some(customer) = self
                    .customer_by_provider_ref(&*txn, provider, &ev.object_ref)
                    .await?
                {
                    record(
                        &*txn,
                        now,
                        customer,
                        None,
                        EventKind::PaymentDetailsUpdated,
                        json!({ "provider": provider }),
                    )
                    .await?;
                }
            }
            _ => {}
        }
        txn.commit().await?;
        self.announce_events();
        self.close_at_providers(&closed).await;
        if refund_queued {
            self.send_due_refunds().await?;
        }
        Ok(true)
    }

    async fn checkout_by_ref(
        &self,
        db: &sea_orm::DatabaseTransaction,
        provider: &str,
        provider_ref: &str,
    ) -> BillingResult<Option<checkout::Model>> {
        Ok(checkout::Entity::find()
            .filter(checkout::Column::Provider.eq(provider))
            .filter(checkout::Column::ProviderRef.eq(provider_ref))
            .one(db)
            .await?)
    }

    pub(crate) async fn customer_by_provider_ref(
        &self,
        db: &impl ConnectionTrait,
        provider: &str,
        r: &str,
    ) -> BillingResult<Option<Uuid>> {
        Ok(provider_customer::Entity::find()
            .filter(provider_customer::Column::Provider.eq(provider))
            .filter(provider_customer::Column::ProviderRef.eq(r))
            .one(db)
            .await?
            .map(|m| m.customer_id))
    }
}
