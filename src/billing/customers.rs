//! Billing customers: created from a project's settings, updated, listed and searched.

use chrono::{DateTime, Utc};
use entity::{customer, subscription};
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, Condition, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    Set,
};
use uuid::Uuid;

use super::Billing;
use super::access::Principal;
use super::error::{BillingError, BillingResult};
use super::validate;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Address {
    pub line1: Option<String>,
    pub line2: Option<String>,
    pub city: Option<String>,
    pub postal_code: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Customer {
    pub id: Uuid,
    pub external_id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub address: Address,
    pub currency: String,
    pub region: Option<String>,
    pub billing_start: Option<DateTime<Utc>>,
    /// Credit set against later invoices first (see `credit`).
    pub credit_balance: rust_decimal::Decimal,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<customer::Model> for Customer {
    fn from(m: customer::Model) -> Self {
        Customer {
            credit_balance: m.credit_balance.0,
            id: m.id,
            external_id: m.external_id,
            name: m.name,
            email: m.email,
            phone: m.phone,
            address: Address {
                line1: m.address_line1,
                line2: m.address_line2,
                city: m.city,
                postal_code: m.postal_code,
                state: m.state,
                country: m.country,
            },
            currency: m.currency,
            region: m.region,
            billing_start: m.billing_start,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct NewCustomer {
    pub external_id: String,
    pub name: String,
    pub email: String,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub currency: Option<String>,
    pub region: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct CustomerChanges {
    pub name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub address: Option<Address>,
    pub currency: Option<String>,
    pub region: Option<String>,
}

/// One page of customers and whether more follow.
pub struct CustomerPage {
    pub customers: Vec<Customer>,
    pub has_next: bool,
}

pub fn cursor_of(c: &Customer) -> String {
    format!("{}|{}", c.created_at.to_rfc3339(), c.id)
}

fn parse_cursor(cursor: &str) -> BillingResult<(DateTime<Utc>, Uuid)> {
    let bad = || BillingError::invalid(format!("after: {cursor:?} is not a cursor from this list"));
    let (at, id) = cursor.split_once('|').ok_or_else(bad)?;
    let at = DateTime::parse_from_rfc3339(at)
        .map_err(|_| bad())?
        .with_timezone(&Utc);
    Ok((at, Uuid::parse_str(id).map_err(|_| bad())?))
}

fn clean_address(a: Address) -> BillingResult<Address> {
    Ok(Address {
        line1: validate::optional_text("address.line1", a.line1.as_deref(), 200)?,
        line2: validate::optional_text("address.line2", a.line2.as_deref(), 200)?,
        city: validate::optional_text("address.city", a.city.as_deref(), 100)?,
        postal_code: validate::optional_text("address.postalCode", a.postal_code.as_deref(), 32)?,
        state: validate::optional_text("address.state", a.state.as_deref(), 100)?,
        country: validate::optional_text("address.country", a.country.as_deref(), 64)?
            .map(|c| validate::country("address.country", &c))
            .transpose()?,
    })
}

fn phone(p: Option<&str>) -> BillingResult<Option<String>> {
    let p = validate::optional_text("phone", p, 32)?;
    if let Some(p) = &p
        && !p
            .chars()
            .all(|c| c.is_ascii_digit() || " +-().".contains(c))
    {
        return Err(BillingError::invalid(format!(
            "phone: {p:?} is not a phone number"
        )));
    }
    Ok(p)
}

fn search_text(external_id: &str, name: &str, email: &str) -> String {
    format!("{external_id}\n{name}\n{email}").to_lowercase()
}

impl Billing {
    pub(crate) async fn customer_model(&self, id: Uuid) -> BillingResult<customer::Model> {
        customer::Entity::find_by_id(id)
            .one(self.db.conn())
            .await?
            .ok_or_else(|| BillingError::not_found("customer", id))
    }

    /// Creates a billing customer; the same external reference again returns the customer
    /// it already names.
    pub async fn create_customer(
        &self,
        who: &Principal,
        input: NewCustomer,
    ) -> BillingResult<Customer> {
        who.require_admin()?;
        let external_id = validate::text("externalId", &input.external_id, 200)?;
        if let Some(existing) = self.customer_by_external_id(&external_id).await? {
            return Ok(existing);
        }
        let name = validate::text("name", &input.name, 200)?;
        let email = validate::email(&input.email)?;
        let phone = phone(input.phone.as_deref())?;
        let address = clean_address(input.address.unwrap_or_default())?;
        let currency = match input.currency.as_deref() {
            Some(c) => validate::currency("currency", c)?,
            None => self.default_currency.clone(),
        };
        let region = validate::region(input.region.as_deref())?;
        let now = self.clock.now();
        let model = customer::ActiveModel {
            id: Set(Uuid::now_v7()),
            search_text: Set(search_text(&external_id, &name, &email)),
            external_id: Set(external_id.clone()),
            name: Set(name),
            email: Set(email),
            phone: Set(phone),
            address_line1: Set(address.line1),
            address_line2: Set(address.line2),
            city: Set(address.city),
            postal_code: Set(address.postal_code),
            state: Set(address.state),
            country: Set(address.country),
            currency: Set(currency),
            region: Set(region),
            billing_start: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            credit_balance: Set(entity::Dec(rust_decimal::Decimal::ZERO)),
        };
        let inserted = {
            let _slot = self.db.writer_slot().await;
            model.insert(self.db.conn()).await
        };
        match inserted {
            Ok(m) => Ok(m.into()),
            // A concurrent create with the same reference won: answer with its customer.
            Err(e)
                if matches!(
                    e.sql_err(),
                    Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
                ) =>
            {
                self.customer_by_external_id(&external_id)
                    .await?
                    .ok_or(BillingError::Db(e))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn customer_by_external_id(&self, external_id: &str) -> BillingResult<Option<Customer>> {
        Ok(customer::Entity::find()
            .filter(customer::Column::ExternalId.eq(external_id))
            .one(self.db.conn())
            .await?
            .map(Customer::from))
    }

    /// Updates a customer's details. Customers may change their contact details; currency
    /// and region are set by administrators.
    pub async fn update_customer(
        &self,
        who: &Principal,
        id: Uuid,
        changes: CustomerChanges,
    ) -> BillingResult<Customer> {
        who.require_customer_access(id)?;
        if !who.is_admin() && (changes.currency.is_some() || changes.region.is_some()) {
            return Err(BillingError::Forbidden);
        }
        let current = self.customer_model(id).await?;
        let mut am: customer::ActiveModel = current.clone().into();
        let mut name = current.name.clone();
        let mut email = current.email.clone();
        if let Some(n) = changes.name {
            name = validate::text("name", &n, 200)?;
            am.name = Set(name.clone());
        }
        if let Some(e) = changes.email {
            email = validate::email(&e)?;
            am.email = Set(email.clone());
        }
        if let Some(p) = changes.phone {
            am.phone = Set(phone(Some(&p))?);
        }
        if let Some(a) = changes.address {
            let a = clean_address(a)?;
            am.address_line1 = Set(a.line1);
            am.address_line2 = Set(a.line2);
            am.city = Set(a.city);
            am.postal_code = Set(a.postal_code);
            am.state = Set(a.state);
            am.country = Set(a.country);
        }
        if let Some(c) = changes.currency {
            am.currency = Set(validate::currency("currency", &c)?);
        }
        if let Some(r) = changes.region {
            am.region = Set(validate::region(Some(&r))?);
        }
        am.search_text = Set(search_text(&current.external_id, &name, &email));
        am.updated_at = Set(self.clock.now());
        let updated = {
            let _slot = self.db.writer_slot().await;
            am.update(self.db.conn()).await?
        };
        // The providers' copies follow ours (outside any transaction; failures are logged).
        self.sync_customer_to_providers(id).await;
        Ok(updated.into())
    }

    pub async fn customer(&self, who: &Principal, id: Uuid) -> BillingResult<Customer> {
        who.require_customer_read(id)?;
        Ok(self.customer_model(id).await?.into())
    }

    /// Loads many customers at once (for DataLoaders); unknown ids are simply absent.
    pub async fn customers_by_ids(&self, ids: &[Uuid]) -> BillingResult<Vec<Customer>> {
        Ok(customer::Entity::find()
            .filter(customer::Column::Id.is_in(ids.iter().copied()))
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(Customer::from)
            .collect())
    }

    /// Admin: customers in creation order, optionally filtered by a search term on
    /// external id, name and email.
    pub async fn customers(
        &self,
        who: &Principal,
        first: usize,
        after: Option<&str>,
        search: Option<&str>,
    ) -> BillingResult<CustomerPage> {
        who.require_backend()?;
        if first > 500 {
            return Err(BillingError::invalid("first must be at most 500"));
        }
        let mut query = customer::Entity::find()
            .order_by_asc(customer::Column::CreatedAt)
            .order_by_asc(customer::Column::Id)
            .limit(first as u64 + 1);
        if let Some(cursor) = after {
            let (at, id) = parse_cursor(cursor)?;
            query = query.filter(
                Condition::any()
                    .add(customer::Column::CreatedAt.gt(at))
                    .add(
                        Condition::all()
                            .add(customer::Column::CreatedAt.eq(at))
                            .add(customer::Column::Id.gt(id)),
                    ),
            );
        }
        if let Some(term) = search.map(str::trim).filter(|s| !s.is_empty()) {
            let escaped = term
                .to_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            query = query.filter(
                Expr::col(customer::Column::SearchText)
                    .like(sea_orm::sea_query::LikeExpr::new(format!("%{escaped}%")).escape('\\')),
            );
        }
        let mut customers: Vec<Customer> = query
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(Customer::from)
            .collect();
        let has_next = customers.len() > first;
        customers.truncate(first);
        Ok(CustomerPage {
            customers,
            has_next,
        })
    }

    /// Admin: sets (or moves) the instant the customer's phase windows are anchored on.
    pub async fn set_billing_start(
        &self,
        who: &Principal,
        id: Uuid,
        at: DateTime<Utc>,
    ) -> BillingResult<Customer> {
        who.require_admin()?;
        let at = validate::instant("at", at)?;
        let current = self.customer_model(id).await?;
        let mut am: customer::ActiveModel = current.into();
        am.billing_start = Set(Some(super::phase::truncate_to_second(at)));
        am.updated_at = Set(self.clock.now());
        let txn = self.db.write().await?;
        let updated = am.update(&*txn).await?;
        // The phase windows moved: the billing clock re-reads them.
        super::schedule::reschedule(&*txn, subscription::Column::CustomerId.eq(id)).await?;
        txn.commit().await?;
        Ok(updated.into())
    }
}
