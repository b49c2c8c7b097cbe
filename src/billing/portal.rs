//! The customer portal: a short-lived signed link to a page our server hosts, where the
//! customer sees their plan and phase, the next invoice, their invoices with documents,
//! and can update the payment method or cancel at the period's end. The link is the
//! session: it names the customer, its expiry and where to go back, all under one HMAC.
//!
//! Also the sentences a checkout page shows about a plan ("Free for 14 days, then
//! 12.50 USD per month"), built from the same catalog.

use chrono::{DateTime, TimeDelta, Utc};
use providers::CheckoutTerms;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::catalog::{Catalog, Plan};
use super::codes::{ProductKind, SubscriptionStatus};
use super::documents::{PageError, plain_amount};
use super::error::BillingResult;
use super::invoicing::Invoice;
use super::money::round_to_currency;
use super::phase::{PhaseKind, phase_timeline, window_at};
use super::pricing::Interval;
use super::subscriptions::Subscription;

/// How long a portal link opens the portal.
pub const PORTAL_TTL: TimeDelta = TimeDelta::hours(1);

/// A portal session, as carried by its link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PortalLink {
    pub customer_id: Uuid,
    /// Unix seconds after which the link is refused.
    pub expires: i64,
    pub return_url: String,
}

impl PortalLink {
    fn message(&self) -> String {
        format!(
            "portal:{}:{}:{}",
            self.customer_id, self.expires, self.return_url
        )
    }

    /// The link's query string, signature included.
    fn query(&self, signature: &str) -> String {
        form_urlencoded::Serializer::new(String::new())
            .append_pair("exp", &self.expires.to_string())
            .append_pair("ret", &self.return_url)
            .append_pair("sig", signature)
            .finish()
    }
}

/// The current subscription as the portal shows it.
#[derive(Clone, Debug)]
pub struct PortalSubscription {
    pub subscription: Subscription,
    pub plan: String,
    pub phase: PhaseKind,
    /// When the phase in force ends (None: it does not, FINAL).
    pub phase_ends: Option<DateTime<Utc>>,
    /// Where the current billing period ends (None: not started).
    pub period_end: Option<DateTime<Utc>>,
}

/// One of the customer's invoices, with its documents.
#[derive(Clone, Debug)]
pub struct PortalInvoice {
    pub invoice: Invoice,
    pub number: Option<String>,
    pub hosted_url: String,
    pub pdf_url: String,
}

/// Everything the portal page shows.
#[derive(Clone, Debug)]
pub struct PortalView {
    pub merchant: String,
    pub customer_name: String,
    pub customer_email: String,
    pub subscription: Option<PortalSubscription>,
    pub preview: Option<Invoice>,
    pub invoices: Vec<PortalInvoice>,
    /// The provider that keeps the payment method, if the customer has one.
    pub provider: Option<String>,
    pub return_url: String,
}

/// What pressing "cancel at period end" did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CancelOutcome {
    Scheduled,
    /// It was scheduled already: nothing changed.
    AlreadyScheduled,
}

impl Billing {
    /// A signed link to the customer's portal, valid for [`PORTAL_TTL`].
    pub async fn create_portal_session(
        &self,
        who: &Principal,
        customer_id: Uuid,
        return_url: &str,
    ) -> BillingResult<String> {
        who.require_customer_access(customer_id)?;
        let return_url = super::subscriptions::url("returnUrl", return_url)?;
        self.customer_model(customer_id).await?;
        let link = PortalLink {
            customer_id,
            expires: (self.clock.now() + PORTAL_TTL).timestamp(),
            return_url,
        };
        Ok(self.portal_url(&link))
    }

    /// The portal page's address for `link`.
    pub fn portal_url(&self, link: &PortalLink) -> String {
        format!(
            "{}/portal/{}?{}",
            self.documents.public_url,
            link.customer_id,
            link.query(&self.documents.sign(&link.message()))
        )
    }

    /// Checks a link's signature, then its expiry (a forged link learns nothing, not even
    /// whether it would have expired).
    pub fn check_portal_link(
        &self,
        link: &PortalLink,
        signature: Option<&str>,
    ) -> Result<Principal, PageError> {
        if !signature.is_some_and(|s| self.documents.verify(&link.message(), s)) {
            return Err(PageError::Refused);
        }
        if self.clock.now().timestamp() >= link.expires {
            return Err(PageError::Expired);
        }
        Ok(Principal::Customer(link.customer_id))
    }

    /// The subscription the portal is about: the newest live one, else the newest.
    async fn current_subscription(&self, customer_id: Uuid) -> BillingResult<Option<Subscription>> {
        let subs = self.subscriptions_of_customers(&[customer_id]).await?;
        let live = subs.iter().find(|s| s.status.is_live()).cloned();
        Ok(live.or_else(|| subs.into_iter().next()))
    }

    pub async fn portal_view(
        &self,
        link: &PortalLink,
        signature: Option<&str>,
    ) -> Result<PortalView, PageError> {
        let who = self.check_portal_link(link, signature)?;
        let customer = self.customer_model(link.customer_id).await?;
        let now = self.clock.now();
        let current = self.current_subscription(customer.id).await?;
        let catalog = self.catalog_with(current.iter().map(|s| s.plan_id)).await?;
        let subscription = current.as_ref().map(|s| {
            let plan = catalog.plan(s.plan_id);
            let specs = plan.map(|p| p.phase_specs()).unwrap_or_default();
            let window = window_at(&specs, customer.billing_start.unwrap_or(now), now);
            PortalSubscription {
                plan: plan.map_or_else(|| s.plan_id.to_string(), |p| p.name.clone()),
                phase: window.map_or(PhaseKind::Final, |w| w.kind),
                phase_ends: window.and_then(|w| w.end),
                period_end: s
                    .started_at
                    .map(|started| super::phase::period_containing(started, now).2),
                subscription: s.clone(),
            }
        });
        let preview = match &current {
            Some(s) if s.status.is_live() && s.started_at.is_some() => {
                Some(self.invoice_preview(&who, s.id).await?)
            }
            _ => None,
        };
        let (invoices, _) = self.invoices(&who, customer.id, 100, None).await?;
        let ids: Vec<Uuid> = invoices.iter().filter_map(|i| i.id).collect();
        let numbers: std::collections::HashMap<Uuid, Option<String>> =
            self.invoice_numbers(&ids).await?.into_iter().collect();
        let mut invoices: Vec<PortalInvoice> = invoices
            .into_iter()
            .filter_map(|i| {
                let id = i.id?;
                Some(PortalInvoice {
                    number: numbers.get(&id).cloned().flatten(),
                    hosted_url: self.documents.invoice_url(id),
                    pdf_url: self.documents.invoice_pdf_url(id),
                    invoice: i,
                })
            })
            .collect();
        invoices.reverse(); // newest first
        let provider = current
            .as_ref()
            .filter(|s| s.status != SubscriptionStatus::Incomplete)
            .map(|s| s.provider.clone());
        Ok(PortalView {
            merchant: self.documents.merchant.name.clone(),
            customer_name: customer.name,
            customer_email: customer.email,
            subscription,
            preview,
            invoices,
            provider,
            return_url: link.return_url.clone(),
        })
    }

    /// "Cancel at period end" pressed on the portal: idempotent.
    pub async fn portal_cancel(
        &self,
        link: &PortalLink,
        signature: Option<&str>,
    ) -> Result<CancelOutcome, PageError> {
        let who = self.check_portal_link(link, signature)?;
        let current = self
            .current_subscription(link.customer_id)
            .await?
            .filter(|s| s.status.is_live())
            .ok_or(PageError::NotFound)?;
        if current.cancel_at_period_end {
            return Ok(CancelOutcome::AlreadyScheduled);
        }
        self.cancel_subscription(&who, current.id, true).await?;
        tracing::info!(customer = %link.customer_id, subscription = %current.id, "cancellation at period end scheduled from the portal");
        Ok(CancelOutcome::Scheduled)
    }

    /// The provider's page to replace the payment method; it returns to the portal.
    pub async fn portal_payment_details(
        &self,
        link: &PortalLink,
        signature: Option<&str>,
    ) -> Result<String, PageError> {
        let who = self.check_portal_link(link, signature)?;
        let back = self.portal_url(link);
        Ok(self
            .update_payment_details(&who, link.customer_id, &back)
            .await?)
    }

    /// What a checkout page says about the plan it sells.
    pub(crate) async fn checkout_terms(
        &self,
        customer: &entity::customer::Model,
        subscription_id: Uuid,
        plan_id: Option<Uuid>,
    ) -> BillingResult<CheckoutTerms> {
        let plan_id = match plan_id {
            Some(p) => Some(p),
            None => self
                .subscription(&Principal::Admin, subscription_id)
                .await
                .ok()
                .map(|s| s.plan_id),
        };
        let catalog = self.catalog_with(plan_id).await?;
        let plan = plan_id.and_then(|p| catalog.plan(p));
        Ok(CheckoutTerms {
            merchant: self.documents.merchant.name.clone(),
            plan: plan.map(|p| p.name.clone()).unwrap_or_default(),
            summary: plan.and_then(|p| {
                plan_summary(
                    &catalog,
                    p,
                    &customer.currency,
                    customer.region.as_deref(),
                    customer.billing_start,
                    self.clock.now(),
                )
            }),
        })
    }
}

/// The default items' price in a phase, as "12.50 USD per month" (hourly prices "per
/// hour", both joined with "+"); None when nothing is priced.
fn phase_price(
    catalog: &Catalog,
    plan: &Plan,
    phase: PhaseKind,
    currency: &str,
    region: Option<&str>,
) -> Option<(Decimal, String)> {
    let mut products: Vec<Uuid> = plan
        .rules
        .iter()
        .filter(|r| {
            catalog
                .product(r.product_id)
                .is_some_and(|p| p.kind == ProductKind::Package)
        })
        .map(|r| r.product_id)
        .collect();
    products.sort();
    products.dedup();
    let (mut monthly, mut hourly) = (Decimal::ZERO, Decimal::ZERO);
    let mut any = false;
    for product in products {
        let r = plan.resolve_price(phase, product, currency, region, Decimal::ONE);
        match r.interval {
            Some(Interval::Month) => {
                monthly += round_to_currency(r.amount, currency);
                any = true;
            }
            Some(Interval::Hour) => {
                hourly += r.amount;
                any = true;
            }
            _ => {}
        }
    }
    if !any {
        return None;
    }
    let mut parts = Vec::new();
    if !monthly.is_zero() || hourly.is_zero() {
        parts.push(format!("{} {currency} per month", plain_amount(monthly)));
    }
    if !hourly.is_zero() {
        parts.push(format!("{} {currency} per hour", plain_amount(hourly)));
    }
    Some((monthly + hourly, parts.join(" + ")))
}

fn days(d: TimeDelta) -> String {
    let n = (d.num_seconds() + 86_399) / 86_400;
    if n == 1 {
        "1 day".into()
    } else {
        format!("{n} days")
    }
}

/// "12.50 USD per month", or with a trial or discount ahead of it: "Free for 14 days, then
/// 12.50 USD per month". Pure: time is a parameter.
pub fn plan_summary(
    catalog: &Catalog,
    plan: &Plan,
    currency: &str,
    region: Option<&str>,
    billing_start: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<String> {
    let specs = plan.phase_specs();
    let timeline = phase_timeline(&specs, billing_start.unwrap_or(now));
    let at = billing_start.map_or(now, |b| Ord::max(b, now));
    let current = timeline.iter().position(|w| w.contains(at))?;
    let mut out: Vec<String> = Vec::new();
    for w in &timeline[current..] {
        let price = phase_price(catalog, plan, w.kind, currency, region);
        let text = match (&price, w.end) {
            (Some((total, _)), Some(end)) if total.is_zero() => {
                format!("Free for {}", days(end - Ord::max(w.start, at)))
            }
            (Some((_, t)), Some(end)) => format!("{t} for {}", days(end - Ord::max(w.start, at))),
            (None, Some(end)) => format!("Free for {}", days(end - Ord::max(w.start, at))),
            (Some((_, t)), None) => t.clone(),
            (None, None) => "Free".into(),
        };
        out.push(text);
    }
    let mut s = out.join(", then ");
    if let Some(first) = s.get(..1) {
        s = first.to_uppercase() + &s[1..];
    }
    Some(s)
}
