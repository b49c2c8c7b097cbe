//! Subscriptions, checkout, payment details and the live event stream.

use async_graphql::futures_util::{Stream, StreamExt};
use async_graphql::{
    Context, ErrorExtensions, ID, InputObject, Json, Object, SimpleObject,
    Subscription as GqlSubscription,
};
use chrono::{DateTime, Utc};

use super::catalog::Plan;
use super::context::ContextExt;
use super::customer::Customer;
use super::enums::{BillingEventKind, CheckoutStatus, PhaseKind, SubscriptionStatus};
use super::error::{GqlResult, uuid};
use super::loaders::Loaders;
use super::scalars::Decimal;
use crate::billing::changes::ChangeSpec;
use crate::billing::events::{self, BillingEvent as EventModel};
use crate::billing::items::NamedItem;
use crate::billing::subscriptions::{
    Checkout as CheckoutModel, NewSubscription, PlanChangeUrls, Subscription as SubscriptionModel,
};

/// A customer's subscription to a plan.
pub struct Subscription(pub SubscriptionModel);

#[Object]
impl Subscription {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn status(&self) -> SubscriptionStatus {
        self.0.status.into()
    }
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        let loader = ctx.data::<Loaders>()?.customers();
        Ok(loader
            .load_one(self.0.customer_id)
            .await
            .map_err(|e| e.extend())?
            .map(Customer))
    }
    async fn plan(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Plan>> {
        let cat = ctx.billing()?.catalog_with([self.0.plan_id]).await.gql()?;
        Ok(cat
            .plan(self.0.plan_id)
            .map(|p| Plan(p.clone(), cat.clone())))
    }
    /// The phase in force now, from the customer's billing start.
    async fn current_phase(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<PhaseKind>> {
        let billing = ctx.billing()?;
        let catalog = billing.catalog_with([self.0.plan_id]).await.gql()?;
        let Some(plan) = catalog.plan(self.0.plan_id).cloned() else {
            return Ok(None);
        };
        let loader = ctx.data::<Loaders>()?.customers();
        let customer = loader
            .load_one(self.0.customer_id)
            .await
            .map_err(|e| e.extend())?;
        Ok(customer.map(|c| billing.phase_now(&plan, c.billing_start).into()))
    }
    async fn provider(&self) -> &str {
        &self.0.provider
    }
    /// When it went live; billing periods are anchored here.
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    async fn cancel_at_period_end(&self) -> bool {
        self.0.cancel_at_period_end
    }
    /// When it was canceled, or (with `cancelAtPeriodEnd`) when it will be.
    async fn canceled_at(&self) -> Option<DateTime<Utc>> {
        self.0.canceled_at
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The items in force: the named ones, or the plan's default items (each PACKAGE
    /// product it prices, quantity 1, no package).
    async fn items(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<SubscriptionItem>> {
        let loader = ctx.data::<Loaders>()?.items();
        let items = loader
            .load_one(self.0.id)
            .await
            .map_err(|e| e.extend())?
            .unwrap_or_default();
        let catalog = ctx.billing()?.catalog();
        Ok(items
            .into_iter()
            .map(|i| SubscriptionItem {
                product_id: ID(i.product_id.to_string()),
                product_name: catalog
                    .product(i.product_id)
                    .map(|p| p.name.clone())
                    .unwrap_or_default(),
                package_id: i.package_id.map(|p| ID(p.to_string())),
                package_name: i.package_id.and_then(|id| {
                    catalog
                        .packages_of(i.product_id)
                        .iter()
                        .find(|p| p.id == id)
                        .map(|p| p.name.clone())
                }),
                quantity: i.quantity.into(),
            })
            .collect())
    }
    /// The latest checkout, if the subscription needed one.
    async fn checkout(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Checkout>> {
        let loader = ctx.data::<Loaders>()?.checkouts();
        Ok(loader
            .load_one(self.0.id)
            .await
            .map_err(|e| e.extend())?
            .map(Checkout))
    }
}

pub struct Checkout(pub CheckoutModel);

#[Object]
impl Checkout {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Where to send the customer's browser.
    async fn url(&self) -> &str {
        &self.0.url
    }
    async fn status(&self) -> CheckoutStatus {
        self.0.status.into()
    }
    /// Charged at checkout; zero when the card is only saved for later.
    async fn amount(&self) -> Decimal {
        self.0.amount.into()
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn failure_reason(&self) -> Option<&str> {
        self.0.failure_reason.as_deref()
    }
    async fn provider(&self) -> &str {
        &self.0.provider
    }
    async fn success_url(&self) -> &str {
        &self.0.success_url
    }
    async fn cancel_url(&self) -> &str {
        &self.0.cancel_url
    }
    async fn expires_at(&self) -> DateTime<Utc> {
        self.0.expires_at
    }
}

#[derive(SimpleObject)]
pub struct CreateSubscriptionPayload {
    pub subscription: Subscription,
    /// None when nothing is due and the plan needs no card: the subscription is live already.
    pub checkout: Option<Checkout>,
}

/// An item of a subscription.
#[derive(SimpleObject)]
pub struct SubscriptionItem {
    pub product_id: ID,
    pub product_name: String,
    /// The package whose included amounts it brings (times the quantity); None: nothing.
    pub package_id: Option<ID>,
    pub package_name: Option<String>,
    pub quantity: Decimal,
}

/// An item to subscribe to: a PACKAGE product priced in the plan, optionally one of its
/// packages, and a quantity above zero (up to 6 decimals).
#[derive(InputObject)]
pub struct SubscriptionItemInput {
    pub product_id: ID,
    pub package_id: Option<ID>,
    #[graphql(default_with = "Decimal(rust_decimal::Decimal::ONE)")]
    pub quantity: Decimal,
}

impl TryFrom<SubscriptionItemInput> for NamedItem {
    type Error = async_graphql::Error;
    fn try_from(i: SubscriptionItemInput) -> Result<Self, Self::Error> {
        Ok(NamedItem {
            product_id: uuid("productId", &i.product_id)?,
            package_id: i
                .package_id
                .as_ref()
                .map(|p| uuid("packageId", p))
                .transpose()?,
            quantity: i.quantity.0,
        })
    }
}

fn named_items(items: Vec<SubscriptionItemInput>) -> async_graphql::Result<Vec<NamedItem>> {
    items.into_iter().map(NamedItem::try_from).collect()
}

/// A change as `changePreview` takes it: a plan or items, exactly one.
pub fn change_spec(
    plan_id: Option<ID>,
    items: Option<Vec<SubscriptionItemInput>>,
) -> async_graphql::Result<ChangeSpec> {
    match (plan_id, items) {
        (Some(p), None) => Ok(ChangeSpec::Plan(uuid("planId", &p)?)),
        (None, Some(items)) => Ok(ChangeSpec::Items(named_items(items)?)),
        _ => Err(crate::billing::BillingError::invalid(
            "give either planId or items",
        ))
        .gql(),
    }
}

#[derive(SimpleObject)]
pub struct SubscriptionChangePayload {
    pub subscription: Subscription,
    /// The change's invoice (PRORATION lines), when it took effect; null while it waits for
    /// its checkout.
    pub invoice: Option<super::invoice::Invoice>,
    /// The checkout to pay before the change takes effect; null when it took effect at once.
    pub checkout: Option<Checkout>,
}

#[derive(SimpleObject)]
pub struct HostedSession {
    pub url: String,
}

#[derive(InputObject)]
pub struct CreateSubscriptionInput {
    pub customer_id: ID,
    pub plan_id: ID,
    /// A configured payment provider; defaults to the server's default.
    pub provider: Option<String>,
    /// Where the browser goes after a successful checkout.
    pub success_url: String,
    /// Where the browser goes when the customer gives up.
    pub cancel_url: String,
    /// The same key with the same input returns the first result.
    pub idempotency_key: Option<String>,
    /// The items to subscribe to; default: the plan's default items.
    pub items: Option<Vec<SubscriptionItemInput>>,
}

/// Something that happened to a customer's billing.
pub struct BillingEvent(pub EventModel);

#[Object]
impl BillingEvent {
    /// Resume after this event with `billingEvents(after: cursor)`.
    async fn cursor(&self) -> String {
        self.0.seq.to_string()
    }
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn kind(&self) -> BillingEventKind {
        self.0.kind.into()
    }
    async fn customer_id(&self) -> ID {
        ID(self.0.customer_id.to_string())
    }
    async fn subscription_id(&self) -> Option<ID> {
        self.0.subscription_id.map(|s| ID(s.to_string()))
    }
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
    async fn data(&self) -> Json<serde_json::Value> {
        Json(self.0.data.clone())
    }
}

#[derive(Default)]
pub struct SubscriptionQuery;

#[Object]
impl SubscriptionQuery {
    async fn subscription(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<Option<Subscription>> {
        let id = uuid("id", &id)?;
        let s = ctx
            .billing()?
            .subscription(&ctx.principal(), id)
            .await
            .gql()?;
        Ok(Some(Subscription(s)))
    }

    /// Events after a cursor (oldest first), for clients that poll instead of subscribing.
    async fn billing_events(
        &self,
        ctx: &Context<'_>,
        customer_id: Option<ID>,
        after: Option<String>,
        #[graphql(default = 100)] first: i32,
    ) -> async_graphql::Result<Vec<BillingEvent>> {
        let customer = customer_id
            .as_ref()
            .map(|c| uuid("customerId", c))
            .transpose()?;
        let after = events::parse_cursor(after.as_deref()).gql()?.unwrap_or(0);
        let first = u64::try_from(first.clamp(1, 1000)).unwrap_or(100);
        let found = ctx
            .billing()?
            .events_after(&ctx.principal(), customer, after, first)
            .await
            .gql()?;
        Ok(found.into_iter().map(BillingEvent).collect())
    }
}

pub async fn customer_subscriptions(
    ctx: &Context<'_>,
    customer_id: uuid::Uuid,
) -> async_graphql::Result<Vec<Subscription>> {
    let loader = ctx.data::<Loaders>()?.subscriptions();
    Ok(loader
        .load_one(customer_id)
        .await
        .map_err(|e| e.extend())?
        .unwrap_or_default()
        .into_iter()
        .map(Subscription)
        .collect())
}

#[derive(Default)]
pub struct SubscriptionMutation;

#[Object]
impl SubscriptionMutation {
    /// Subscribes a customer to a plan: the subscription (INCOMPLETE) and the checkout to
    /// send the browser to — or, when nothing is due and no card is needed, a live one.
    async fn create_subscription(
        &self,
        ctx: &Context<'_>,
        input: CreateSubscriptionInput,
    ) -> async_graphql::Result<CreateSubscriptionPayload> {
        let out = ctx
            .billing()?
            .create_subscription(
                &ctx.principal(),
                NewSubscription {
                    customer_id: uuid("customerId", &input.customer_id)?,
                    plan_id: uuid("planId", &input.plan_id)?,
                    provider: input.provider,
                    success_url: input.success_url,
                    cancel_url: input.cancel_url,
                    idempotency_key: input.idempotency_key,
                    items: input.items.map(named_items).transpose()?,
                },
            )
            .await
            .gql()?;
        Ok(CreateSubscriptionPayload {
            subscription: Subscription(out.subscription),
            checkout: out.checkout.map(Checkout),
        })
    }

    /// A provider-hosted page where the customer replaces the stored payment method.
    async fn update_payment_details(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        return_url: String,
    ) -> async_graphql::Result<HostedSession> {
        let url = ctx
            .billing()?
            .update_payment_details(
                &ctx.principal(),
                uuid("customerId", &customer_id)?,
                &return_url,
            )
            .await
            .gql()?;
        Ok(HostedSession { url })
    }

    async fn cancel_subscription(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default = false)] at_period_end: bool,
    ) -> async_graphql::Result<Subscription> {
        let s = ctx
            .billing()?
            .cancel_subscription(&ctx.principal(), uuid("id", &id)?, at_period_end)
            .await
            .gql()?;
        Ok(Subscription(s))
    }

    /// Moves the subscription to another plan mid-period, prorated like
    /// `updateSubscriptionItems` (named items are kept; default items follow the new plan).
    /// A change that must be paid first carries its checkout when the saved payment method
    /// is missing or refused, and the subscription stays as it is until it is paid.
    async fn change_plan(
        &self,
        ctx: &Context<'_>,
        subscription_id: ID,
        plan_id: ID,
        idempotency_key: Option<String>,
        success_url: Option<String>,
        cancel_url: Option<String>,
    ) -> async_graphql::Result<SubscriptionChangePayload> {
        let out = ctx
            .billing()?
            .change_plan(
                &ctx.principal(),
                uuid("subscriptionId", &subscription_id)?,
                uuid("planId", &plan_id)?,
                PlanChangeUrls {
                    success_url,
                    cancel_url,
                    idempotency_key,
                },
            )
            .await
            .gql()?;
        Ok(change_payload(out))
    }

    /// Replaces the subscription's items mid-period, prorated: the unused part of what was
    /// billed in advance is credited and the new items are charged for the rest of the
    /// period, on an invoice issued at once. A change that costs more than the credit
    /// balance covers takes effect when paid: with the saved payment method, or through the
    /// returned checkout (give `successUrl` and `cancelUrl`).
    async fn update_subscription_items(
        &self,
        ctx: &Context<'_>,
        subscription_id: ID,
        items: Vec<SubscriptionItemInput>,
        idempotency_key: Option<String>,
        success_url: Option<String>,
        cancel_url: Option<String>,
    ) -> async_graphql::Result<SubscriptionChangePayload> {
        let out = ctx
            .billing()?
            .update_subscription_items(
                &ctx.principal(),
                uuid("subscriptionId", &subscription_id)?,
                named_items(items)?,
                PlanChangeUrls {
                    success_url,
                    cancel_url,
                    idempotency_key,
                },
            )
            .await
            .gql()?;
        Ok(change_payload(out))
    }
}

fn change_payload(out: crate::billing::subscriptions::Subscribed) -> SubscriptionChangePayload {
    SubscriptionChangePayload {
        subscription: Subscription(out.subscription),
        invoice: out.invoice.map(super::invoice::Invoice),
        checkout: out.checkout.map(Checkout),
    }
}

/// A subscriber's events, as `billingEvents` hands them over to the websocket path.
pub type EventStream =
    std::pin::Pin<Box<dyn Stream<Item = crate::billing::error::BillingResult<EventModel>> + Send>>;

/// How the websocket path runs `billingEvents` (request data; without it the resolver
/// streams one execution per event, as any async-graphql subscription).
pub enum EventsMode {
    /// Check the arguments and the caller's access as usual, then leave the caller's
    /// events here instead of streaming them: the connection follows them itself.
    Open(std::sync::Arc<std::sync::Mutex<Option<EventStream>>>),
    /// Yield this one event (already chosen for its subscribers): one execution of the
    /// selection set renders it for all of them.
    Render(EventModel),
}

#[derive(Default)]
pub struct SubscriptionRoot;

#[GqlSubscription]
impl SubscriptionRoot {
    /// Live billing events the caller may see (admins: all, or one customer's; a customer
    /// token: its own). Pass the last `cursor` seen as `after` to miss nothing on reconnect.
    async fn billing_events(
        &self,
        ctx: &Context<'_>,
        customer_id: Option<ID>,
        after: Option<String>,
    ) -> async_graphql::Result<
        async_graphql::futures_util::stream::BoxStream<
            'static,
            async_graphql::Result<BillingEvent>,
        >,
    > {
        use async_graphql::futures_util::stream;
        let mode = ctx.data_opt::<EventsMode>();
        if let Some(EventsMode::Render(e)) = mode {
            return Ok(stream::once(std::future::ready(Ok(BillingEvent(e.clone())))).boxed());
        }
        let customer = customer_id
            .as_ref()
            .map(|c| uuid("customerId", c))
            .transpose()?;
        let after = events::parse_cursor(after.as_deref()).gql()?;
        // Access is checked here, so a refused subscription fails at once.
        let events = ctx
            .billing()?
            .clone()
            .follow_events(&ctx.principal(), customer, after)
            .await
            .gql()?;
        if let Some(EventsMode::Open(slot)) = mode {
            *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(events.boxed());
            return Ok(stream::empty().boxed());
        }
        Ok(events
            .map(|e| e.map(BillingEvent).map_err(|e| e.extend()))
            .boxed())
    }
}
