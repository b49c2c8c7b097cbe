//! A customer's credit: an append-only ledger (`credit_entry`, each row with the balance it
//! left) and its running balance on the customer (`customer.credit_balance`), moved together
//! in one transaction by [`move_credit`], the ledger's only writer.
//!
//! Credit comes from invoices with a negative total and from payments that took more than
//! their invoice; it is used first on later invoices; when a customer's last subscription
//! ends, what is left is refunded through the provider (`BILLING_REFUND_CREDIT=refund`) or
//! kept (`keep`).

use chrono::{DateTime, Utc};
use entity::{Dec, checkout, credit_entry, customer, invoice, subscription};
use rust_decimal::Decimal;
use sea_orm::sea_query::Expr;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set};
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
pub use super::codes::CreditReason;
use super::codes::{CheckoutStatus, Code, InvoiceStatus, SubscriptionStatus, parse};
use super::error::{BillingError, BillingResult};
use super::refunds::PaymentToRefund;

/// The reason stored on refunds of credit (and only on them): a refused one gives the credit
/// back to the customer.
pub(crate) const CREDIT_REFUND: &str = "credit left when the last subscription ended";

/// One movement of credit: positive adds, negative uses or gives back.
#[derive(Clone, Debug)]
pub struct Move {
    pub customer_id: Uuid,
    pub subscription_id: Option<Uuid>,
    pub invoice_id: Option<Uuid>,
    pub amount: Decimal,
    pub reason: CreditReason,
}

#[derive(Clone, Debug)]
pub struct CreditEntry {
    pub id: Uuid,
    pub amount: Decimal,
    pub balance_after: Decimal,
    pub currency: String,
    pub reason: CreditReason,
    pub subscription_id: Option<Uuid>,
    pub invoice_id: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

/// The customer's balance as `db` sees it.
pub async fn balance(db: &impl ConnectionTrait, customer_id: Uuid) -> BillingResult<Decimal> {
    Ok(customer::Entity::find_by_id(customer_id)
        .one(db)
        .await?
        .ok_or_else(|| BillingError::not_found("customer", customer_id))?
        .credit_balance
        .0)
}

/// Moves credit and appends the entry; conditional on the balance read, so two writers
/// cannot both spend it. A move that would leave the balance below zero is refused.
/// Returns the balance after it. A zero move writes nothing.
pub async fn move_credit(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    m: Move,
) -> BillingResult<Decimal> {
    let c = customer::Entity::find_by_id(m.customer_id)
        .one(db)
        .await?
        .ok_or_else(|| BillingError::not_found("customer", m.customer_id))?;
    if m.amount.is_zero() {
        return Ok(c.credit_balance.0);
    }
    let after = c.credit_balance.0 + m.amount;
    if after < Decimal::ZERO {
        return Err(BillingError::InvalidState(format!(
            "credit of customer {} would go below zero",
            m.customer_id
        )));
    }
    let moved = customer::Entity::update_many()
        .col_expr(customer::Column::CreditBalance, Expr::value(Dec(after)))
        .filter(customer::Column::Id.eq(m.customer_id))
        .filter(customer::Column::CreditBalance.eq(c.credit_balance))
        .exec(db)
        .await?;
    if moved.rows_affected == 0 {
        return Err(BillingError::Conflict(format!(
            "the credit of customer {} changed meanwhile; try again",
            m.customer_id
        )));
    }
    credit_entry::Entity::insert(credit_entry::ActiveModel {
        id: Set(Uuid::now_v7()),
        customer_id: Set(m.customer_id),
        subscription_id: Set(m.subscription_id),
        invoice_id: Set(m.invoice_id),
        amount: Set(Dec(m.amount)),
        balance_after: Set(Dec(after)),
        currency: Set(c.currency.clone()),
        reason: Set(m.reason.code().to_owned()),
        created_at: Set(now),
    })
    .exec_without_returning(db)
    .await?;
    tracing::info!(customer = %m.customer_id, invoice = ?m.invoice_id, amount = %m.amount,
        balance = %after, currency = c.currency, reason = m.reason.code(), "credit moved");
    Ok(after)
}

impl Billing {
    /// A customer's credit entries, oldest first.
    pub async fn credit_entries(
        &self,
        who: &Principal,
        customer_id: Uuid,
    ) -> BillingResult<Vec<CreditEntry>> {
        who.require_customer_access(customer_id)?;
        credit_entry::Entity::find()
            .filter(credit_entry::Column::CustomerId.eq(customer_id))
            .order_by_asc(credit_entry::Column::CreatedAt)
            .order_by_asc(credit_entry::Column::Id)
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(|e| {
                Ok(CreditEntry {
                    id: e.id,
                    amount: e.amount.0,
                    balance_after: e.balance_after.0,
                    currency: e.currency,
                    reason: parse(&e.reason)?,
                    subscription_id: e.subscription_id,
                    invoice_id: e.invoice_id,
                    created_at: e.created_at,
                })
            })
            .collect()
    }

    /// When the customer has no live subscription left and credit is refunded, queues the
    /// refund of the whole balance against the customer's payments (newest first, each at
    /// most what it took and once) and takes it off the balance. Credit no payment can carry
    /// stays. Runs in the transaction that ended the subscription.
    pub(crate) async fn refund_credit_if_done(
        &self,
        db: &impl ConnectionTrait,
        now: DateTime<Utc>,
        customer_id: Uuid,
    ) -> BillingResult<()> {
        if !self.refund_credit {
            return Ok(());
        }
        let left = balance(db, customer_id).await?;
        if left <= Decimal::ZERO {
            return Ok(());
        }
        let subs = subscription::Entity::find()
            .filter(subscription::Column::CustomerId.eq(customer_id))
            .all(db)
            .await?;
        let live = subs
            .iter()
            .any(|s| parse::<SubscriptionStatus>(&s.status).is_ok_and(SubscriptionStatus::is_live));
        if live {
            return Ok(());
        }
        let ids: Vec<Uuid> = subs.iter().map(|s| s.id).collect();
        // Payments: paid checkouts and collected invoices, newest first.
        let mut payments: Vec<(DateTime<Utc>, Uuid, String, String, Decimal)> = Vec::new();
        for c in checkout::Entity::find()
            .filter(checkout::Column::SubscriptionId.is_in(ids.clone()))
            .filter(checkout::Column::Status.eq(CheckoutStatus::Succeeded.code()))
            .all(db)
            .await?
        {
            if c.amount.0 > Decimal::ZERO {
                payments.push((
                    c.updated_at,
                    c.subscription_id,
                    c.provider,
                    c.provider_ref,
                    c.amount.0,
                ));
            }
        }
        let provider_of = |sub: Uuid| {
            subs.iter()
                .find(|s| s.id == sub)
                .map(|s| s.provider.clone())
                .unwrap_or_default()
        };
        for i in invoice::Entity::find()
            .filter(invoice::Column::SubscriptionId.is_in(ids))
            .filter(invoice::Column::Status.eq(InvoiceStatus::Paid.code()))
            .filter(invoice::Column::PaymentRef.is_not_null())
            .all(db)
            .await?
        {
            if let Some(r) = i.payment_ref.clone()
                && i.amount_due.0 > Decimal::ZERO
            {
                payments.push((
                    i.updated_at,
                    i.subscription_id,
                    provider_of(i.subscription_id),
                    r,
                    i.amount_due.0,
                ));
            }
        }
        payments.sort_by_key(|p| std::cmp::Reverse(p.0));
        let currency = customer::Entity::find_by_id(customer_id)
            .one(db)
            .await?
            .map(|c| c.currency)
            .unwrap_or_default();
        let mut to_refund = left;
        for (_, sub, provider, payment_ref, amount) in payments {
            if to_refund <= Decimal::ZERO {
                break;
            }
            let part = amount.min(to_refund);
            // One refund per payment: a payment refunded already is passed over (not queued).
            let queued = self
                .queue_payment_refund(
                    db,
                    now,
                    PaymentToRefund {
                        customer_id,
                        subscription_id: Some(sub),
                        checkout_id: None,
                        provider,
                        payment_ref,
                        amount: part,
                        currency: currency.clone(),
                    },
                    CREDIT_REFUND,
                )
                .await?;
            if queued {
                move_credit(
                    db,
                    now,
                    Move {
                        customer_id,
                        subscription_id: Some(sub),
                        invoice_id: None,
                        amount: -part,
                        reason: CreditReason::Refunded,
                    },
                )
                .await?;
                to_refund -= part;
            }
        }
        if to_refund > Decimal::ZERO {
            tracing::warn!(customer = %customer_id, left = %to_refund,
                "credit left that no payment can carry back; it stays on the customer");
        }
        Ok(())
    }
}
