//! DataLoaders: nested lookups batched into one query per kind per request.

use std::collections::HashMap;
use std::sync::Arc;

use async_graphql::dataloader::Loader;
use uuid::Uuid;

use crate::billing::customers::Customer;
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
