//! DataLoaders: nested lookups batched into one query per kind per request.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use async_graphql::dataloader::{DataLoader, Loader};
use uuid::Uuid;

use crate::billing::customers::Customer;
use crate::billing::db::spawn_counted;
use crate::billing::items::SubscriptionItem;
use crate::billing::subscriptions::{Checkout, Subscription};
use crate::billing::{Billing, BillingError};

/// Customers by id. Authorization stays with the resolvers that ask.
pub struct CustomerLoader(pub Arc<Billing>);

impl Loader<Uuid> for CustomerLoader {
    type Value = Customer;
    type Error = Arc<BillingError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Customer>, Self::Error> {
        let found = self.0.customers_by_ids(keys).await.map_err(Arc::new)?;
        Ok(found.into_iter().map(|c| (c.id, c)).collect())
    }
}

/// Each customer's subscriptions, newest first.
pub struct SubscriptionsByCustomer(pub Arc<Billing>);

impl Loader<Uuid> for SubscriptionsByCustomer {
    type Value = Vec<Subscription>;
    type Error = Arc<BillingError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Vec<Subscription>>, Self::Error> {
        let mut out: HashMap<Uuid, Vec<Subscription>> = HashMap::new();
        for s in self
            .0
            .subscriptions_of_customers(keys)
            .await
            .map_err(Arc::new)?
        {
            out.entry(s.customer_id).or_default().push(s);
        }
        Ok(out)
    }
}

/// Each subscription's latest checkout.
pub struct CheckoutBySubscription(pub Arc<Billing>);

impl Loader<Uuid> for CheckoutBySubscription {
    type Value = Checkout;
    type Error = Arc<BillingError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Checkout>, Self::Error> {
        let found = self
            .0
            .checkouts_of_subscriptions(keys)
            .await
            .map_err(Arc::new)?;
        // Oldest first: later checkouts replace earlier ones.
        Ok(found.into_iter().map(|c| (c.subscription_id, c)).collect())
    }
}

/// Each subscription's items in force.
pub struct ItemsBySubscription(pub Arc<Billing>);

impl Loader<Uuid> for ItemsBySubscription {
    type Value = Vec<SubscriptionItem>;
    type Error = Arc<BillingError>;

    async fn load(
        &self,
        keys: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<SubscriptionItem>>, Self::Error> {
        self.0.items_of_subscriptions(keys).await.map_err(Arc::new)
    }
}

/// Invoice numbers by invoice id (None: not numbered).
pub struct InvoiceNumberLoader(pub Arc<Billing>);

impl Loader<Uuid> for InvoiceNumberLoader {
    type Value = Option<String>;
    type Error = Arc<BillingError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, Option<String>>, Self::Error> {
        Ok(self
            .0
            .invoice_numbers(keys)
            .await
            .map_err(Arc::new)?
            .into_iter()
            .collect())
    }
}

/// A request's loaders, each made on first use: most requests use none, and a loader
/// costs allocations to set up.
pub struct Loaders {
    billing: Arc<Billing>,
    customers: OnceLock<DataLoader<CustomerLoader>>,
    subscriptions: OnceLock<DataLoader<SubscriptionsByCustomer>>,
    checkouts: OnceLock<DataLoader<CheckoutBySubscription>>,
    items: OnceLock<DataLoader<ItemsBySubscription>>,
    invoice_numbers: OnceLock<DataLoader<InvoiceNumberLoader>>,
}

impl Loaders {
    pub fn customers(&self) -> &DataLoader<CustomerLoader> {
        self.customers
            .get_or_init(|| DataLoader::new(CustomerLoader(self.billing.clone()), spawn_counted))
    }

    pub fn subscriptions(&self) -> &DataLoader<SubscriptionsByCustomer> {
        self.subscriptions.get_or_init(|| {
            DataLoader::new(SubscriptionsByCustomer(self.billing.clone()), spawn_counted)
        })
    }

    pub fn checkouts(&self) -> &DataLoader<CheckoutBySubscription> {
        self.checkouts.get_or_init(|| {
            DataLoader::new(CheckoutBySubscription(self.billing.clone()), spawn_counted)
        })
    }

    pub fn items(&self) -> &DataLoader<ItemsBySubscription> {
        self.items.get_or_init(|| {
            DataLoader::new(ItemsBySubscription(self.billing.clone()), spawn_counted)
        })
    }

    pub fn invoice_numbers(&self) -> &DataLoader<InvoiceNumberLoader> {
        self.invoice_numbers.get_or_init(|| {
            DataLoader::new(InvoiceNumberLoader(self.billing.clone()), spawn_counted)
        })
    }
}

/// Everything a request needs to batch its lookups.
pub fn request_loaders(billing: &Arc<Billing>, data: &mut async_graphql::Data) {
    data.insert(Loaders {
        billing: billing.clone(),
        customers: OnceLock::new(),
        subscriptions: OnceLock::new(),
        checkouts: OnceLock::new(),
        items: OnceLock::new(),
        invoice_numbers: OnceLock::new(),
    });
}
