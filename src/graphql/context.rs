//! What every resolver needs from the request: the domain service and the caller.

use std::sync::Arc;

use async_graphql::Context;

use crate::billing::{Billing, Principal};

pub trait ContextExt {
    fn billing(&self) -> async_graphql::Result<&Arc<Billing>>;
    fn principal(&self) -> Principal;
}

impl ContextExt for Context<'_> {
    fn billing(&self) -> async_graphql::Result<&Arc<Billing>> {
        self.data::<Arc<Billing>>()
    }

    fn principal(&self) -> Principal {
        self.data_opt::<Principal>()
            .copied()
            .unwrap_or(Principal::Anonymous)
    }
}
