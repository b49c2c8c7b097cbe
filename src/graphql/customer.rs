//! Customers, API keys and the viewer.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, ErrorExtensions, ID, InputObject, Object, SimpleObject};
use chrono::{DateTime, Utc};

use super::catalog::Plan;
use super::context::ContextExt;
use super::enums::Role;
use super::error::{GqlResult, uuid};
use super::loaders::Loaders;
use crate::billing::BillingError;
use crate::billing::access::{ApiKey as ApiKeyModel, Principal};
use crate::billing::codes;
use crate::billing::customers::{
    self, Address as AddressModel, Customer as CustomerModel, CustomerChanges, NewCustomer,
};

pub struct Customer(pub CustomerModel);

#[derive(SimpleObject, InputObject, Clone, Default)]
#[graphql(input_name = "AddressInput")]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
}

impl From<AddressModel> for Address {
    fn from(a: AddressModel) -> Self {
        Address {
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            postal_code: a.postal_code,
            state: a.state,
            country: a.country,
        }
    }
}

impl From<Address> for AddressModel {
    fn from(a: Address) -> Self {
        AddressModel {
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            postal_code: a.postal_code,
            state: a.state,
            country: a.country,
        }
    }
}

#[Object]
impl Customer {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// The project's reference for this customer.
    async fn external_id(&self) -> &str {
        &self.0.external_id
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn phone(&self) -> Option<&str> {
        self.0.phone.as_deref()
    }
    async fn address(&self) -> Address {
        self.0.address.clone().into()
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn region(&self) -> Option<&str> {
        self.0.region.as_deref()
    }
    /// Where the customer's phase windows start; set by the first subscription or an admin.
    async fn billing_start(&self) -> Option<DateTime<Utc>> {
        self.0.billing_start
    }
    /// Credit from invoices with a negative total (downgrades, cancellations) or from
    /// payments beyond their invoice; used first on later invoices.
    async fn credit_balance(&self) -> super::scalars::Decimal {
        self.0.credit_balance.into()
    }
    /// The credit ledger, oldest first: every movement with the balance it left.
    async fn credit_entries(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::invoice::CreditEntry>> {
        let entries = ctx
            .billing()?
            .credit_entries(&ctx.principal(), self.0.id)
            .await
            .gql()?;
        Ok(entries.into_iter().map(Into::into).collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The plans this customer may choose from: public ones and those offered to them, in
    /// the customer's currency.
    async fn available_plans(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<Plan>> {
        let cat = ctx.billing()?.catalog();
        Ok(cat
            .plans
            .iter()
            .filter(|p| p.visible_to(Some(self.0.id)) && p.offers_currency(&self.0.currency))
            .map(|p| Plan(p.clone(), cat.clone()))
            .collect())
    }
    /// The customer's subscriptions, newest first.
    async fn subscriptions(
        &self,
        ctx: &Context<'_>,
    ) -> async_graphql::Result<Vec<super::subscription::Subscription>> {
        // A service key reads the customer, not its subscriptions.
        ctx.principal().require_customer_access(self.0.id).gql()?;
        super::subscription::customer_subscriptions(ctx, self.0.id).await
    }
    /// Admin: the customer's API keys (never their tokens).
    async fn api_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
        let keys = ctx
            .billing()?
            .api_keys(&ctx.principal(), self.0.id)
            .await
            .gql()?;
        Ok(keys.into_iter().map(ApiKey).collect())
    }
}

pub struct ApiKey(pub ApiKeyModel);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn role(&self) -> Role {
        match self.0.role {
            codes::Role::Admin => Role::Admin,
            codes::Role::Service => Role::Service,
            codes::Role::Customer => Role::Customer,
        }
    }
    /// What a service key is for.
    async fn name(&self) -> Option<&str> {
        self.0.name.as_deref()
    }
    async fn customer_id(&self) -> Option<ID> {
        self.0.customer_id.map(|c| ID(c.to_string()))
    }
    /// A generated token's first characters, to tell keys apart (empty for a configured
    /// admin token).
    async fn prefix(&self) -> &str {
        &self.0.prefix
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn revoked_at(&self) -> Option<DateTime<Utc>> {
        self.0.revoked_at
    }
}

/// A new API key and its token: shown this once, stored only as a hash.
#[derive(SimpleObject)]
pub struct ApiKeySecret {
    pub key: ApiKey,
    pub token: String,
    /// The customer of a customer key; none for a service key.
    pub customer: Option<Customer>,
}

/// Who the request's token is.
pub struct Viewer(Principal);

#[Object]
impl Viewer {
    async fn role(&self) -> Role {
        match self.0 {
            Principal::Admin => Role::Admin,
            Principal::Service => Role::Service,
            Principal::Customer(_) => Role::Customer,
            Principal::Anonymous => Role::Anonymous,
        }
    }
    /// The customer a customer token belongs to.
    async fn customer(&self, ctx: &Context<'_>) -> async_graphql::Result<Option<Customer>> {
        let Principal::Customer(id) = self.0 else {
            return Ok(None);
        };
        load_customer(ctx, id).await.map(Some)
    }
}

async fn load_customer(ctx: &Context<'_>, id: uuid::Uuid) -> async_graphql::Result<Customer> {
    ctx.principal().require_customer_read(id).gql()?;
    let loader = ctx.data::<Loaders>()?.customers();
    loader
        .load_one(id)
        .await
        .map_err(|e| e.extend())?
        .map(Customer)
        .ok_or_else(|| BillingError::not_found("customer", id).extend())
}

#[derive(InputObject)]
pub struct CreateCustomerInput {
    /// The project's reference: creating twice with it returns the same customer.
    pub external_id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub address: Option<Address>,
    /// ISO 4217; defaults to the server's default currency.
    pub currency: Option<String>,
    pub region: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateCustomerInput {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
    /// Admin only.
    pub currency: Option<String>,
    /// Admin only.
    pub region: Option<String>,
}

#[derive(Default)]
pub struct CustomerQuery;

#[Object]
impl CustomerQuery {
    async fn viewer(&self, ctx: &Context<'_>) -> Viewer {
        Viewer(ctx.principal())
    }

    /// Admin: the service keys (never their tokens).
    async fn service_keys(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<ApiKey>> {
        let keys = ctx.billing()?.service_keys(&ctx.principal()).await.gql()?;
        Ok(keys.into_iter().map(ApiKey).collect())
    }

    /// A customer: admins see any, a customer token only its own (others are NOT_FOUND).
    async fn customer(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Customer>> {
        let id = uuid("id", &id)?;
        // A root field is one primary-key read: no loader round trip on the hot path.
        let c = ctx.billing()?.customer(&ctx.principal(), id).await.gql()?;
        Ok(Some(Customer(c)))
    }

    /// Admin: customers in creation order, optionally searched by external id, name or email.
    async fn customers(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        search: Option<String>,
    ) -> async_graphql::Result<Connection<String, Customer, EmptyFields, EmptyFields>> {
        let first = usize::try_from(first.unwrap_or(50))
            .map_err(|_| BillingError::invalid("first must not be negative"))
            .gql()?;
        let page = ctx
            .billing()?
            .customers(&ctx.principal(), first, after.as_deref(), search.as_deref())
            .await
            .gql()?;
        let mut conn = Connection::new(after.is_some(), page.has_next);
        conn.edges.extend(
            page.customers
                .into_iter()
                .map(|c| Edge::new(customers::cursor_of(&c), Customer(c))),
        );
        Ok(conn)
    }
}

#[derive(Default)]
pub struct CustomerMutation;

#[Object]
impl CustomerMutation {
    /// Creates a billing customer (or returns the one with this external id).
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomerInput,
    ) -> async_graphql::Result<Customer> {
        let c = ctx
            .billing()?
            .create_customer(
                &ctx.principal(),
                NewCustomer {
                    external_id: input.external_id,
                    name: input.name,
                    email: input.email,
                    phone: input.phone,
                    address: input.address.map(Into::into),
                    currency: input.currency,
                    region: input.region,
                },
            )
            .await
            .gql()?;
        Ok(Customer(c))
    }

    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateCustomerInput,
    ) -> async_graphql::Result<Customer> {
        let changes = CustomerChanges {
            name: input.name,
            email: input.email,
            phone: input.phone,
            address: input.address.map(Into::into),
            currency: input.currency,
            region: input.region,
        };
        let c = ctx
            .billing()?
            .update_customer(&ctx.principal(), uuid("id", &id)?, changes)
            .await
            .gql()?;
        Ok(Customer(c))
    }

    /// Admin: anchors (or re-anchors) the customer's phase windows.
    async fn set_billing_start(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        at: DateTime<Utc>,
    ) -> async_graphql::Result<Customer> {
        let c = ctx
            .billing()?
            .set_billing_start(&ctx.principal(), uuid("customerId", &customer_id)?, at)
            .await
            .gql()?;
        Ok(Customer(c))
    }

    /// Admin: issues an API key that sees and changes only this customer.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
    ) -> async_graphql::Result<ApiKeySecret> {
        let billing = ctx.billing()?;
        let who = ctx.principal();
        let id = uuid("customerId", &customer_id)?;
        let issued = billing.create_api_key(&who, id).await.gql()?;
        let customer = billing.customer(&who, id).await.gql()?;
        Ok(ApiKeySecret {
            key: ApiKey(issued.key),
            token: issued.token,
            customer: Some(Customer(customer)),
        })
    }

    /// Admin: issues a service key for a project's backend: it records usage, acquires
    /// and releases limits for any customer, and reads customers and entitlements.
    async fn create_service_key(
        &self,
        ctx: &Context<'_>,
        name: String,
    ) -> async_graphql::Result<ApiKeySecret> {
        let issued = ctx
            .billing()?
            .create_service_key(&ctx.principal(), &name)
            .await
            .gql()?;
        Ok(ApiKeySecret {
            key: ApiKey(issued.key),
            token: issued.token,
            customer: None,
        })
    }

    /// Admin: revokes an API key; its token stops working at once on this server.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<ApiKey> {
        let key = ctx
            .billing()?
            .revoke_api_key(&ctx.principal(), uuid("id", &id)?)
            .await
            .gql()?;
        Ok(ApiKey(key))
    }
}
