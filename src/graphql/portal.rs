//! The customer portal: a short-lived signed link to the customer's billing page.

use async_graphql::{Context, ID, Object};

use super::context::ContextExt;
use super::error::{GqlResult, uuid};
use super::subscription::HostedSession;

#[derive(Default)]
pub struct PortalMutation;

#[Object]
impl PortalMutation {
    /// The customer's billing page (plan and phase, next invoice, invoices and their
    /// documents, payment method, cancel at period end), behind a signed link that works
    /// for an hour. Admin or the customer's own key.
    async fn create_portal_session(
        &self,
        ctx: &Context<'_>,
        customer_id: ID,
        return_url: String,
    ) -> async_graphql::Result<HostedSession> {
        let url = ctx
            .billing()?
            .create_portal_session(
                &ctx.principal(),
                uuid("customerId", &customer_id)?,
                &return_url,
            )
            .await
            .gql()?;
        Ok(HostedSession { url })
    }
}
