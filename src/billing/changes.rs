//! Changes to a live subscription mid-period: another plan, other items (DESIGN "When lines
//! are billed, changes mid-period, credits").
//!
//! A change cuts the period at its instant. Advance lines already billed are credited for the
//! unused part and the new configuration's advance lines for the rest of the period are
//! charged, all as PRORATION lines on a change invoice issued at once. A change that costs
//! more than the credit balance covers takes effect when that is paid: at once with the saved
//! payment method, or through the returned checkout when there is none (or it is refused);
//! until then nothing changes. A paid change is computed again at the instant its payment
//! succeeded, and what the payment took beyond that becomes credit.

use chrono::{DateTime, Utc};
use entity::{customer, subscription, subscription_phase};
use providers::{ChargeRequest, PaymentOutcome, ProviderError};
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, Set};
use serde::{Deserialize, Serialize};
use serde_json::json;
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::checkout::{OpenCheckout, Which};
use super::codes::{CloseReason, Code, EventKind, InvoiceKind, SubscriptionStatus, parse};
use super::credit;
use super::error::{BillingError, BillingResult};
use super::events::record;
use super::gateway::within;
use super::idempotency::{Claim, request_hash, scope_of};
use super::invoice::Line;
use super::invoicing::Invoice;
use super::invoicing::issue::{Billable, Issued, NewInvoice, insert_invoice};
use super::items::{Config, NamedItem, validate_items, versions_of, write_version};
use super::phase::{PhaseKind, period_containing, phase_at};
use super::subscriptions::{PlanChangeUrls, Subscribed, url};

/// What a subscription changes to: a plan and its named items (None: the plan's defaults).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub plan_id: Uuid,
    pub items: Option<Vec<NamedItem>>,
}

/// A change as asked for.
#[derive(Clone, Debug)]
pub enum ChangeSpec {
    Plan(Uuid),
    Items(Vec<NamedItem>),
}

impl ChangeSpec {
    fn canonical(&self) -> String {
        match self {
            ChangeSpec::Plan(p) => format!("plan:{p}"),
            ChangeSpec::Items(items) => {
                format!("items:{}", serde_json::to_string(items).unwrap_or_default())
            }
        }
    }
}

impl Billing {
    /// Moves a subscription to another plan (named items are kept; default items follow
    /// the new plan).
    pub async fn change_plan(
        &self,
        who: &Principal,
        id: Uuid,
        plan_id: Uuid,
        urls: PlanChangeUrls,
    ) -> BillingResult<Subscribed> {
        self.change_keyed(who, id, ChangeSpec::Plan(plan_id), urls, "changePlan")
            .await
    }

    /// Replaces a subscription's items (quantities, packages).
    pub async fn update_subscription_items(
        &self,
        who: &Principal,
        id: Uuid,
        items: Vec<NamedItem>,
        urls: PlanChangeUrls,
    ) -> BillingResult<Subscribed> {
        self.change_keyed(
            who,
            id,
            ChangeSpec::Items(items),
            urls,
            "updateSubscriptionItems",
        )
        .await
    }

    async fn change_keyed(
        &self,
        who: &Principal,
        id: Uuid,
        spec: ChangeSpec,
        urls: PlanChangeUrls,
        operation: &str,
    ) -> BillingResult<Subscribed> {
        let Some(key) = urls.idempotency_key.clone() else {
            return self.change(who, id, spec, urls).await;
        };
        let scope = scope_of(who);
        let canonical = format!(
            "{id}|{}|{}|{}",
            spec.canonical(),
            urls.success_url.as_deref().unwrap_or_default(),
            urls.cancel_url.as_deref().unwrap_or_default()
        );
        match self
            .claim_idempotency(&scope, &key, operation, &request_hash(&canonical))
            .await?
        {
            Claim::Fresh => {}
            Claim::Replay(stored) => return self.replay_subscribed(&stored).await,
        }
        let result = self.change(who, id, spec, urls).await;
        self.finish_idempotency(&scope, &key, &result).await?;
        result
    }

    /// What a change would cost now, as an invoice that is not stored.
    pub async fn change_preview(
        &self,
        who: &Principal,
        id: Uuid,
        spec: ChangeSpec,
    ) -> BillingResult<Invoice> {
        let (sub, customer, target) = self.change_target(who, id, &spec).await?;
        let now = self.clock.now();
        let (lines, period) = self
            .change_lines(self.db.conn(), &sub, &customer, &target, now)
            .await?;
        Ok(self.draft_invoice(
            &sub,
            &customer.currency,
            InvoiceKind::Change,
            period,
            lines,
            now,
        ))
    }

    /// The subscription, its customer and what it would change to; refused when it cannot.
    async fn change_target(
        &self,
        who: &Principal,
        id: Uuid,
        spec: &ChangeSpec,
    ) -> BillingResult<(subscription::Model, customer::Model, Target)> {
        let sub = self.subscription_model(id).await?;
        who.require_customer_access(sub.customer_id)
            .map_err(|_| BillingError::not_found("subscription", id))?;
        let status: SubscriptionStatus = parse(&sub.status)?;
        if !status.grants_plan() {
            return Err(BillingError::InvalidState(format!(
                "subscription {id} is {} and cannot change",
                status.code()
            )));
        }
        let customer = self.customer_model(sub.customer_id).await?;
        let catalog = self.catalog_with([sub.plan_id]).await?;
        let current = versions_of(self.db.conn(), [sub.id])
            .await?
            .remove(&sub.id)
            .and_then(|v| v.into_iter().next_back());
        let current_items = current.and_then(|v| v.items);
        let target = match spec {
            ChangeSpec::Plan(plan_id) => {
                let plan = self.plan_for(who, &customer, *plan_id).await?;
                if plan.id == sub.plan_id {
                    return Err(BillingError::invalid(
                        "the subscription is already on this plan",
                    ));
                }
                // Refused rather than scheduled: the caller releases what does not fit.
                self.check_limits_fit(sub.customer_id, &plan).await?;
                Target {
                    plan_id: plan.id,
                    items: current_items,
                }
            }
            ChangeSpec::Items(items) => {
                let plan = catalog
                    .plan(sub.plan_id)
                    .cloned()
                    .ok_or_else(|| BillingError::not_found("plan", sub.plan_id))?;
                Target {
                    plan_id: plan.id,
                    items: Some(validate_items(&catalog, &plan, items)?),
                }
            }
        };
        Ok((sub, customer, target))
    }

    /// The lines of a change to `target` at `at`, and the period it falls in.
    async fn change_lines(
        &self,
        db: &impl ConnectionTrait,
        sub: &subscription::Model,
        customer: &customer::Model,
        target: &Target,
        at: DateTime<Utc>,
    ) -> BillingResult<(Vec<Line>, (DateTime<Utc>, DateTime<Utc>))> {
        let started = sub.started_at.ok_or_else(|| {
            BillingError::InvalidState(format!("subscription {} has not started", sub.id))
        })?;
        let catalog = self.catalog();
        let versions = versions_of(db, [sub.id]).await?;
        let configs = self.configs_of(&catalog, sub, versions.get(&sub.id))?;
        let plan = catalog
            .plan(target.plan_id)
            .cloned()
            .ok_or_else(|| BillingError::not_found("plan", target.plan_id))?;
        let new = Config::new(&catalog, at, plan, target.items.clone());
        let mut billable = Billable::new(&catalog, started, configs, customer, Vec::new());
        billable.legacy = sub.legacy_period.and_then(|p| u32::try_from(p).ok());
        let lines = billable.subject().change(at, new.span(), billable.legacy);
        let (_, ps, pe) = period_containing(started, at);
        Ok((lines, (at.max(ps), pe)))
    }

    async fn change(
        &self,
        who: &Principal,
        id: Uuid,
        spec: ChangeSpec,
        urls: PlanChangeUrls,
    ) -> BillingResult<Subscribed> {
        let (sub, customer, target) = self.change_target(who, id, &spec).await?;
        // Boundaries the clock has not issued yet come first: the change credits what they bill.
        self.bill_subscription(&sub, &customer, self.clock.now())
            .await?;
        let sub = self.subscription_model(id).await?;
        let now = self.clock.now();
        let (lines, _) = self
            .change_lines(self.db.conn(), &sub, &customer, &target, now)
            .await?;
        let total = super::invoice::total_of(&lines, &customer.currency);
        let balance = credit::balance(self.db.conn(), customer.id).await?;
        let due = super::money::round_to_currency(
            super::money::at_least_zero(total - balance),
            &customer.currency,
        );
        let change_id = Uuid::now_v7();
        if total <= Decimal::ZERO || due.is_zero() {
            let invoice = self
                .apply_and_announce(
                    &sub,
                    &target,
                    Decimal::ZERO,
                    None,
                    change_id,
                    &customer.currency,
                )
                .await?;
            return self.subscribed(id, invoice, None).await;
        }

        // It costs more than the credit covers: the saved payment method first.
        let provider = self.provider(Some(&sub.provider))?;
        let customer_ref = self
            .provider_customer_ref(provider.as_ref(), &customer)
            .await?;
        let charged = within(
            self.provider_timeout,
            provider.name(),
            "charge",
            provider.charge(ChargeRequest {
                customer_ref,
                amount: due,
                currency: customer.currency.clone(),
                description: format!("Subscription change {change_id}"),
                idempotency_key: format!("change-{change_id}"),
            }),
        )
        .await;
        tracing::info!(subscription = %id, change = %change_id, amount = %due,
            currency = customer.currency, outcome = ?charged, "change charge attempted");
        let refused = match charged {
            Ok(PaymentOutcome::Succeeded { provider_ref }) => {
                let invoice = self
                    .apply_and_announce(
                        &sub,
                        &target,
                        due,
                        Some(provider_ref),
                        change_id,
                        &customer.currency,
                    )
                    .await?;
                return self.subscribed(id, invoice, None).await;
            }
            Ok(PaymentOutcome::Failed { reason, .. }) => reason,
            Err(ProviderError::Rejected(reason)) => reason,
            Ok(PaymentOutcome::Pending { provider_ref })
            | Ok(PaymentOutcome::Unknown {
                provider_ref: Some(provider_ref),
            }) => {
                // Money may still move for it: given back if it does; nothing changes.
                let txn = self.db.write().await?;
                self.queue_payment_refund(
                    &*txn,
                    now,
                    super::refunds::PaymentToRefund {
                        customer_id: customer.id,
                        subscription_id: Some(sub.id),
                        checkout_id: None,
                        provider: provider.name().to_owned(),
                        payment_ref: provider_ref,
                        amount: due,
                        currency: customer.currency.clone(),
                    },
                    "the change's payment did not settle in time; the change was not made",
                )
                .await?;
                txn.commit().await?;
                return Err(BillingError::Provider(ProviderError::Unreachable(
                    "the payment did not settle in time; nothing changed, and anything it took is refunded".into(),
                )));
            }
            Ok(PaymentOutcome::Unknown { provider_ref: None }) | Err(_) => {
                return Err(BillingError::Provider(ProviderError::Unreachable(
                    "the payment provider did not answer; nothing changed, try again".into(),
                )));
            }
        };
        let (success_url, cancel_url) = match (urls.success_url, urls.cancel_url) {
            (Some(s), Some(c)) => (url("successUrl", &s)?, url("cancelUrl", &c)?),
            _ => {
                return Err(BillingError::invalid(format!(
                    "this change must be paid first ({due} {}), and the saved payment method \
                     was not accepted ({refused}): give successUrl and cancelUrl for its checkout",
                    customer.currency
                )));
            }
        };
        let checkout = self
            .open_checkout(OpenCheckout {
                provider,
                customer: &customer,
                subscription_id: id,
                plan_id: Some(target.plan_id),
                change: Some(target.clone()),
                amount: due,
                description: format!("Subscription change — {}", customer.name),
                success_url,
                cancel_url,
                idempotency_key: format!("change-checkout-{change_id}"),
            })
            .await?;
        tracing::info!(subscription = %id, checkout = %checkout.id, amount = %due,
            "change waits for its payment");
        self.subscribed(id, None, Some(checkout)).await
    }

    async fn subscribed(
        &self,
        id: Uuid,
        invoice: Option<Uuid>,
        checkout: Option<super::checkout::Checkout>,
    ) -> BillingResult<Subscribed> {
        let invoice = match invoice {
            Some(i) => Some(self.invoice_by_id(i).await?),
            None => None,
        };
        Ok(Subscribed {
            subscription: self.subscription_model(id).await?.try_into()?,
            checkout,
            invoice,
        })
    }

    /// Applies a change in a transaction of its own; a change the subscription can no
    /// longer take (it ended meanwhile) gives back what was paid for it.
    async fn apply_and_announce(
        &self,
        sub: &subscription::Model,
        target: &Target,
        paid: Decimal,
        payment_ref: Option<String>,
        change_id: Uuid,
        currency: &str,
    ) -> BillingResult<Option<Uuid>> {
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let issued = self
            .apply_change(
                &*txn,
                now,
                sub.id,
                target,
                paid,
                payment_ref.clone(),
                change_id,
            )
            .await?;
        if issued.is_none()
            && let Some(r) = payment_ref
        {
            self.queue_payment_refund(
                &*txn,
                now,
                super::refunds::PaymentToRefund {
                    customer_id: sub.customer_id,
                    subscription_id: Some(sub.id),
                    checkout_id: None,
                    provider: sub.provider.clone(),
                    payment_ref: r,
                    amount: paid,
                    currency: currency.to_owned(),
                },
                "the subscription ended before its change was made",
            )
            .await?;
        }
        // A change still waiting for its payment is superseded by this one.
        let closed = self
            .close_open(
                &*txn,
                now,
                sub.id,
                CloseReason::Replaced,
                Which::PlanChanges,
            )
            .await?;
        txn.commit().await?;
        self.announce_events();
        self.close_at_providers(&closed).await;
        if issued.is_none() {
            return Err(BillingError::Conflict(format!(
                "subscription {} changed meanwhile; read it again",
                sub.id
            )));
        }
        Ok(issued.map(|i| i.id))
    }

    /// After a plan change the new plan's phase windows apply from the unchanged billing
    /// start, so the phase in force may be an earlier kind than before (a longer trial):
    /// the phases seen start again from it, and a change of kind is recorded.
    async fn restart_phases(
        &self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
        sub: &subscription::Model,
        customer: &customer::Model,
        plan_id: Uuid,
    ) -> BillingResult<()> {
        let catalog = self.catalog_with([sub.plan_id, plan_id]).await?;
        let kind_on = |id: Uuid| {
            catalog.plan(id).map(|p| {
                let specs = p.phase_specs();
                specs
                    .get(phase_at(&specs, customer.billing_start, now))
                    .map_or(PhaseKind::Final, |s| s.kind)
            })
        };
        let (Some(before), Some(after)) = (kind_on(sub.plan_id), kind_on(plan_id)) else {
            return Ok(());
        };
        subscription_phase::Entity::delete_many()
            .filter(subscription_phase::Column::SubscriptionId.eq(sub.id))
            .exec(db)
            .await?;
        subscription_phase::Entity::insert(subscription_phase::ActiveModel {
            subscription_id: Set(sub.id),
            phase: Set(after.code().to_owned()),
            entered_at: Set(now),
        })
        .exec_without_returning(db)
        .await?;
        if before != after {
            record(
                db,
                now,
                sub.customer_id,
                Some(sub.id),
                EventKind::PhaseChanged,
                json!({ "from": before.code(), "to": after.code(), "reason": "plan changed" }),
            )
            .await?;
        }
        Ok(())
    }

    /// Makes a change at `now` in `db`: the new version, the plan, the event, and the change
    /// invoice (paid `paid` already). `None` when the subscription no longer takes changes.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn apply_change(
        &self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
        sub_id: Uuid,
        target: &Target,
        paid: Decimal,
        payment_ref: Option<String>,
        change_id: Uuid,
    ) -> BillingResult<Option<Issued>> {
        let Some(sub) = subscription::Entity::find_by_id(sub_id).one(db).await? else {
            return Ok(None);
        };
        let status: SubscriptionStatus = parse(&sub.status)?;
        if !status.grants_plan() {
            return Ok(None);
        }
        let customer = customer::Entity::find_by_id(sub.customer_id)
            .one(db)
            .await?
            .ok_or_else(|| BillingError::not_found("customer", sub.customer_id))?;
        let (lines, period) = self.change_lines(db, &sub, &customer, target, now).await?;
        write_version(db, sub.id, now, target.plan_id, target.items.as_deref()).await?;
        if target.plan_id != sub.plan_id {
            self.write_plan_change(db, now, &sub, target.plan_id)
                .await?;
            self.restart_phases(db, now, &sub, &customer, target.plan_id)
                .await?;
        } else {
            record(
                db,
                now,
                sub.customer_id,
                Some(sub.id),
                EventKind::ItemsChanged,
                json!({ "items": target.items }),
            )
            .await?;
            tracing::info!(subscription = %sub.id, "items changed");
        }
        let started = sub.started_at.unwrap_or(now);
        let (j, _, _) = period_containing(started, now);
        insert_invoice(
            db,
            now,
            NewInvoice {
                subscription_id: sub.id,
                customer_id: sub.customer_id,
                key: format!("change-{change_id}"),
                kind: InvoiceKind::Change,
                period_index: j,
                period,
                currency: customer.currency.clone(),
                lines,
                paid,
                payment_ref,
            },
        )
        .await
    }
}
