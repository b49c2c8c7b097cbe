//! Collecting issued invoices: each open invoice whose attempt is due is charged through
//! its subscription's provider (its amount due, after credit), and the outcome settles it:
//! paid, retried on the dunning schedule, or uncollectible.

use std::collections::{HashMap, HashSet};

use chrono::TimeDelta;
use chrono::{DateTime, Utc};
use entity::{customer, invoice, provider_customer, subscription};
use futures_util::{StreamExt, stream};
use providers::{ChargeRequest, PaymentOutcome, ProviderError};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select, Set,
};
use serde_json::json;
use uuid::Uuid;

use super::super::Billing;
use super::super::codes::{Code, EventKind, InvoiceStatus, SubscriptionStatus};
use super::super::db::{self, per_row};
use super::super::error::BillingResult;
use super::super::events::{NewEvent, record_many};
use super::super::gateway::within;
use super::super::lifecycle::{self, Current, Trigger};
use super::super::phase::PhaseKind;
use super::{BILLED, CLOCK_BATCH, COLLECT_CONCURRENCY, FinalFailure};

impl Billing {
    /// Charges open invoices whose attempt is due, a few at a time (provider calls are
    /// slow; settling is quick). A charge whose outcome never arrived is asked about, or
    /// sent again under the same idempotency key: never charged twice.
    pub(super) async fn collect_due(&self) -> BillingResult<()> {
        let now = self.clock.now();
        // In (attempt time, id) order from its index: one range read per batch.
        let mut after: Option<(Option<DateTime<Utc>>, Uuid)> = None;
        loop {
            let due = due_invoices(now, after).all(self.db.conn()).await?;
            let Some(last) = due.last() else { break };
            after = Some((last.next_attempt_at, last.id));
            let subs: HashMap<Uuid, subscription::Model> = subscription::Entity::find()
                .filter(subscription::Column::Id.is_in(due.iter().map(|i| i.subscription_id)))
                .all(self.db.conn())
                .await?
                .into_iter()
                .map(|s| (s.id, s))
                .collect();
            let customers = self
                .customers_by_id(subs.values().map(|s| s.customer_id))
                .await?;
            // The customers' references at their providers, in one read.
            let refs: HashMap<(Uuid, String), String> = provider_customer::Entity::find()
                .filter(provider_customer::Column::CustomerId.is_in(customers.keys().copied()))
                .all(self.db.conn())
                .await?
                .into_iter()
                .map(|r| ((r.customer_id, r.provider), r.provider_ref))
                .collect();
            // Fresh charges through a provider that takes batches go together; the others
            // (and questions about charges sent before) a few at a time. No write is held
            // meanwhile: a provider may write its own records.
            let mut batches: HashMap<
                &str,
                Vec<(invoice::Model, &subscription::Model, ChargeRequest)>,
            > = HashMap::new();
            let mut singles = Vec::new();
            for inv in due {
                let Some(sub) = subs.get(&inv.subscription_id) else {
                    continue;
                };
                let Some(customer) = customers.get(&sub.customer_id) else {
                    continue;
                };
                let known = refs.get(&(customer.id, sub.provider.clone())).cloned();
                let batched = self
                    .providers
                    .get(&sub.provider)
                    .is_ok_and(|p| p.charges_in_batches());
                match known {
                    Some(customer_ref) if batched && inv.payment_ref.is_none() => {
                        log_attempt(&inv, sub);
                        let request = charge_request(&inv, customer_ref);
                        batches
                            .entry(sub.provider.as_str())
                            .or_default()
                            .push((inv, sub, request));
                    }
                    known => singles.push(async move {
                        let outcome = self.attempt_charge(&inv, sub, customer, known).await;
                        (inv, sub, outcome)
                    }),
                }
            }
            let mut outcomes: Vec<_> = stream::iter(singles)
                .buffer_unordered(COLLECT_CONCURRENCY)
                .collect()
                .await;
            for (name, batch) in batches {
                outcomes.extend(self.charge_batch(name, batch).await);
            }
            self.settle_invoices(outcomes).await?;
        }
        Ok(())
    }

    /// One collection attempt. Errors that leave it unclear whether money moved are
    /// `Unknown`; a refusal is a failure of this attempt.
    async fn attempt_charge(
        &self,
        inv: &invoice::Model,
        sub: &subscription::Model,
        customer: &customer::Model,
        customer_ref: Option<String>,
    ) -> PaymentOutcome {
        let unknown = || PaymentOutcome::Unknown {
            provider_ref: inv.payment_ref.clone(),
        };
        log_attempt(inv, sub);
        let Ok(provider) = self.providers.get(&sub.provider) else {
            return unknown();
        };
        let result = match &inv.payment_ref {
            // A charge was sent and is still unsettled: ask, don't charge twice.
            Some(r) => {
                within(
                    self.provider_timeout,
                    provider.name(),
                    "payment_status",
                    provider.payment_status(r),
                )
                .await
            }
            None => {
                let customer_ref = match customer_ref {
                    Some(r) => r,
                    None => match self
                        .provider_customer_ref(provider.as_ref(), customer)
                        .await
                    {
                        Ok(r) => r,
                        Err(_) => return unknown(),
                    },
                };
                within(
                    self.provider_timeout,
                    provider.name(),
                    "charge",
                    provider.charge(charge_request(inv, customer_ref)),
                )
                .await
            }
        };
        outcome_of(inv, result)
    }

    /// Fresh charges of one batch through `provider` (one that takes batches), in one call
    /// with the timeout of one: if that passes, every outcome of the batch is unknown, and
    /// each charge is sent again later under its key.
    async fn charge_batch<'s>(
        &self,
        provider: &str,
        batch: Vec<(invoice::Model, &'s subscription::Model, ChargeRequest)>,
    ) -> Vec<(invoice::Model, &'s subscription::Model, PaymentOutcome)> {
        let mut invoices = Vec::with_capacity(batch.len());
        let mut requests = Vec::with_capacity(batch.len());
        for (inv, sub, request) in batch {
            invoices.push((inv, sub));
            requests.push(request);
        }
        let answers = match self.providers.get(provider) {
            Ok(p) => {
                within(self.provider_timeout, p.name(), "charge_many", async {
                    Ok(p.charge_many(requests).await)
                })
                .await
            }
            Err(e) => Err(e),
        };
        match answers {
            Ok(answers) if answers.len() == invoices.len() => invoices
                .into_iter()
                .zip(answers)
                .map(|((inv, sub), answer)| {
                    let outcome = outcome_of(&inv, answer);
                    (inv, sub, outcome)
                })
                .collect(),
            _ => invoices
                .into_iter()
                .map(|(inv, sub)| {
                    let outcome = outcome_of(&inv, Err(ProviderError::Timeout));
                    (inv, sub, outcome)
                })
                .collect(),
        }
    }

    /// Settles a batch of attempts in one transaction: the paid ones in one conditional
    /// update (an invoice another process settled meanwhile is left alone and reports
    /// nothing), the others one by one (retries are rarer), their events in one insert,
    /// then the status changes they cause.
    async fn settle_invoices(
        &self,
        outcomes: Vec<(invoice::Model, &subscription::Model, PaymentOutcome)>,
    ) -> BillingResult<()> {
        if outcomes.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let mut paid: Vec<(&invoice::Model, &subscription::Model, String)> = Vec::new();
        let mut events: Vec<NewEvent> = Vec::new();
        let mut moves: Vec<(Trigger, Current, serde_json::Value)> = Vec::new();
        for (inv, sub, outcome) in &outcomes {
            let data = json!({ "invoiceId": inv.id, "total": inv.total.0.to_string(), "amountDue": inv.amount_due.0.to_string(), "currency": inv.currency });
            let event = |kind, data| NewEvent {
                customer_id: sub.customer_id,
                subscription_id: Some(sub.id),
                kind,
                data,
            };
            let current = Current::try_from(*sub)?;
            // A final invoice of an ended subscription is still collected, but the
            // subscription stays as it is.
            let live = BILLED.contains(&current.status);
            let mut am = invoice::ActiveModel {
                id: Set(inv.id),
                updated_at: Set(now),
                ..Default::default()
            };
            match outcome {
                PaymentOutcome::Succeeded { provider_ref } => {
                    paid.push((inv, sub, provider_ref.clone()));
                    continue;
                }
                PaymentOutcome::Pending { provider_ref } => {
                    am.payment_ref = Set(Some(provider_ref.clone()));
                    am.next_attempt_at = Set(Some(now + TimeDelta::hours(1)));
                    if inv.payment_ref.is_none() {
                        events.push(event(EventKind::PaymentPending, data));
                    }
                }
                PaymentOutcome::Unknown { provider_ref } => {
                    // With a reference we ask about it later; without one the same attempt
                    // is sent again under its idempotency key, which the provider deduplicates.
                    am.payment_ref = Set(provider_ref.clone().or(inv.payment_ref.clone()));
                    am.next_attempt_at = Set(Some(now + TimeDelta::minutes(10)));
                    tracing::warn!(invoice = %inv.id, "invoice charge outcome unknown; asking again later");
                }
                PaymentOutcome::Failed { reason, .. } => {
                    let attempts = inv.attempts + 1;
                    am.attempts = Set(attempts);
                    am.payment_ref = Set(None);
                    let mut failed = data.clone();
                    failed["reason"] = json!(reason);
                    failed["attempt"] = json!(attempts);
                    tracing::info!(invoice = %inv.id, attempt = attempts, reason, "invoice charge failed");
                    events.push(event(EventKind::PaymentFailed, failed));
                    match self.dunning.retries.get(attempts as usize - 1) {
                        Some(delay) => {
                            // Counted from the first attempt (the invoice's issue), not from each failure.
                            am.next_attempt_at = Set(Some(Ord::max(inv.created_at + *delay, now)));
                            if live && current.status != SubscriptionStatus::PastDue {
                                moves.push((Trigger::RenewalFailed, current, data));
                            }
                        }
                        None => {
                            am.status = Set(InvoiceStatus::Uncollectible.code().to_owned());
                            am.next_attempt_at = Set(None);
                            events.push(event(EventKind::InvoiceUncollectible, data));
                            tracing::warn!(invoice = %inv.id, "invoice uncollectible");
                            // Ended already: nothing more to do to it; past due stays past
                            // due when the policy keeps it.
                            let stays = current.status == SubscriptionStatus::PastDue
                                && self.dunning.final_failure == FinalFailure::Unpaid;
                            if live && !stays {
                                moves.push((
                                    Trigger::DunningExhausted,
                                    current,
                                    json!({ "reason": "payment failed", "invoiceId": inv.id }),
                                ));
                            }
                        }
                    }
                }
            }
            am.update(&*txn).await?;
        }
        if let Some(reference) = per_row(
            invoice::Column::Id,
            paid.iter()
                .map(|(inv, _, r)| (inv.id, Expr::value(r.clone()))),
        ) {
            let settled: HashSet<Uuid> = invoice::Entity::update_many()
                .col_expr(
                    invoice::Column::Status,
                    Expr::value(InvoiceStatus::Paid.code()),
                )
                .col_expr(invoice::Column::PaymentRef, reference)
                .col_expr(
                    invoice::Column::NextAttemptAt,
                    Expr::value(None::<DateTime<Utc>>),
                )
                .col_expr(invoice::Column::UpdatedAt, Expr::value(now))
                .filter(invoice::Column::Id.is_in(paid.iter().map(|(i, _, _)| i.id)))
                .filter(invoice::Column::Status.eq(InvoiceStatus::Open.code()))
                .exec_with_returning(&*txn)
                .await?
                .into_iter()
                .map(|i| i.id)
                .collect();
            for (inv, sub, _) in paid.iter().filter(|(i, _, _)| settled.contains(&i.id)) {
                let data = json!({ "invoiceId": inv.id, "total": inv.total.0.to_string(), "amountDue": inv.amount_due.0.to_string(), "currency": inv.currency });
                for kind in [EventKind::PaymentSucceeded, EventKind::InvoicePaid] {
                    events.push(NewEvent {
                        customer_id: sub.customer_id,
                        subscription_id: Some(sub.id),
                        kind,
                        data: data.clone(),
                    });
                }
                let current = Current::try_from(*sub)?;
                if current.status == SubscriptionStatus::PastDue {
                    moves.push((Trigger::RenewalPaid, current, data));
                }
                tracing::info!(invoice = %inv.id, subscription = %sub.id, amount = %inv.amount_due.0, currency = inv.currency, "invoice charge succeeded; invoice paid");
            }
        }
        // The invoices' events, then the status changes they cause (each with its own).
        record_many(&*txn, now, events).await?;
        for trigger in [
            Trigger::RenewalPaid,
            Trigger::RenewalFailed,
            Trigger::DunningExhausted,
        ] {
            let group: Vec<_> = moves
                .iter()
                .filter(|(t, _, _)| *t == trigger)
                .map(|(_, c, d)| (*c, PhaseKind::Final, d.clone()))
                .collect();
            if !group.is_empty() {
                lifecycle::apply_many(&*txn, now, trigger, &self.policy(), group).await?;
            }
        }
        txn.commit().await?;
        self.announce_events();
        Ok(())
    }
}

/// The next batch of open invoices whose attempt is due at `now`, after the last one read:
/// a range of `invoice_collection_scan_idx`.
pub(super) fn due_invoices(
    now: DateTime<Utc>,
    after: Option<(Option<DateTime<Utc>>, Uuid)>,
) -> Select<invoice::Entity> {
    let q = invoice::Entity::find()
        .filter(invoice::Column::Status.eq(InvoiceStatus::Open.code()))
        .filter(invoice::Column::NextAttemptAt.lte(now))
        .order_by_asc(invoice::Column::NextAttemptAt)
        .order_by_asc(invoice::Column::Id)
        .limit(CLOCK_BATCH);
    match after {
        Some((at, id)) => q.filter(db::after(
            (invoice::Column::NextAttemptAt, at.into()),
            (invoice::Column::Id, id.into()),
        )),
        None => q,
    }
}

fn log_attempt(inv: &invoice::Model, sub: &subscription::Model) {
    tracing::info!(invoice = %inv.id, subscription = %sub.id, amount = %inv.amount_due.0,
        currency = inv.currency, attempt = inv.attempts + 1, asking = inv.payment_ref.is_some(),
        "invoice charge attempted");
}

/// The charge of an invoice's current attempt: its amount due, under a key that stays the
/// same until the attempt settles, so a resend is the same charge.
fn charge_request(inv: &invoice::Model, customer_ref: String) -> ChargeRequest {
    ChargeRequest {
        customer_ref,
        amount: inv.amount_due.0,
        currency: inv.currency.clone(),
        description: format!(
            "Invoice {} ({} – {})",
            inv.id,
            inv.period_start.date_naive(),
            inv.period_end.date_naive()
        ),
        idempotency_key: format!("invoice-{}-attempt-{}", inv.id, inv.attempts + 1),
    }
}

/// What a provider's answer means for an attempt. Errors that leave it unclear whether
/// money moved are `Unknown`; a refusal of a fresh charge is a failure of this attempt.
fn outcome_of(
    inv: &invoice::Model,
    answer: Result<PaymentOutcome, ProviderError>,
) -> PaymentOutcome {
    match answer {
        Ok(outcome) => outcome,
        Err(ProviderError::Rejected(reason)) if inv.payment_ref.is_none() => {
            PaymentOutcome::Failed {
                provider_ref: None,
                reason,
            }
        }
        Err(_) => PaymentOutcome::Unknown {
            provider_ref: inv.payment_ref.clone(),
        },
    }
}
