//! The server's side of [`providers::EventSink`]: a provider's own page hands over what it
//! learnt (a paid checkout, a decline, an abandoned checkout) and it is applied at once,
//! exactly as a webhook carrying the same events would be (once per event id).

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use providers::{EventSink, ProviderError, ProviderEvent};

use super::Billing;

/// Applies a page's events through [`Billing::apply_provider_events`].
pub struct BillingSink {
    // Weak: the providers live inside `Billing`, and this lives inside a provider.
    billing: Weak<Billing>,
}

impl BillingSink {
    pub fn new(billing: &Arc<Billing>) -> Self {
        BillingSink {
            billing: Arc::downgrade(billing),
        }
    }
}

#[async_trait]
impl EventSink for BillingSink {
    async fn deliver(
        &self,
        provider: &'static str,
        events: Vec<ProviderEvent>,
    ) -> Result<(), ProviderError> {
        let billing = self
            .billing
            .upgrade()
            .ok_or_else(|| ProviderError::Unreachable("the server is shutting down".into()))?;
        billing
            .apply_provider_events(provider, events)
            .await
            .map(|_| ())
            .map_err(|e| {
                tracing::warn!(provider, error = %e, "a provider page's events were not applied");
                ProviderError::Unreachable(format!("the server could not apply the events: {e}"))
            })
    }
}
