use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// The billing clock visits only what is due: each live subscription says when it next
/// needs the clock (a period end or a phase boundary), and the clock's other scans get
/// indexes that match them. Without these every tick read every row it might care about.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // The epoch means "due now": existing rows are scheduled at the first tick.
        manager
            .alter_table(
                Table::alter()
                    .table(Subscription::Table)
                    .add_column(
                        timestamp_with_time_zone(Subscription::NextBillingAt)
                            .default("1970-01-01T00:00:00+00:00"),
                    )
                    .to_owned(),
            )
            .await?;
        // Subscriptions that ended before this step were billed as they were: the clock
        // leaves them alone.
        manager
            .get_connection()
            .execute_unprepared(
                "UPDATE subscription SET next_billing_at = '9999-12-31T23:59:59+00:00' \
                 WHERE status NOT IN ('INCOMPLETE', 'ACTIVE', 'TRIALING', 'PAST_DUE')",
            )
            .await?;
        let indexes = [
            Index::create()
                .name("subscription_billing_due_idx")
                .table(Subscription::Table)
                .col(Subscription::Status)
                .col(Subscription::NextBillingAt)
                .to_owned(),
            Index::create()
                .name("event_subscription_idx")
                .table(Event::Table)
                .col(Event::SubscriptionId)
                .col(Event::Seq)
                .to_owned(),
            Index::create()
                .name("invoice_collection_idx")
                .table(Invoice::Table)
                .col(Invoice::Status)
                .col(Invoice::NextAttemptAt)
                .to_owned(),
            Index::create()
                .name("checkout_expiry_idx")
                .table(Checkout::Table)
                .col(Checkout::Status)
                .col(Checkout::ExpiresAt)
                .to_owned(),
            // Lookups by parent that were scans: a customer's subscriptions and keys, a plan's
            // subscribers, a subscription's checkouts.
            Index::create()
                .name("subscription_customer_idx")
                .table(Subscription::Table)
                .col(Subscription::CustomerId)
                .to_owned(),
            Index::create()
                .name("subscription_plan_idx")
                .table(Subscription::Table)
                .col(Subscription::PlanId)
                .to_owned(),
            Index::create()
                .name("checkout_subscription_idx")
                .table(Checkout::Table)
                .col(Checkout::SubscriptionId)
                .to_owned(),
            Index::create()
                .name("api_key_customer_idx")
                .table(ApiKey::Table)
                .col(ApiKey::CustomerId)
                .to_owned(),
            // Webhooks name the provider's customer: find ours without a scan.
            Index::create()
                .name("provider_customer_ref_idx")
                .table(ProviderCustomer::Table)
                .col(ProviderCustomer::Provider)
                .col(ProviderCustomer::ProviderRef)
                .to_owned(),
            Index::create()
                .name("checkout_reconcile_idx")
                .table(Checkout::Table)
                .col(Checkout::Status)
                .col(Checkout::NextCheckAt)
                .to_owned(),
        ];
        for index in indexes {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            ("checkout_reconcile_idx", Checkout::Table.into_iden()),
            (
                "provider_customer_ref_idx",
                ProviderCustomer::Table.into_iden(),
            ),
            ("api_key_customer_idx", ApiKey::Table.into_iden()),
            ("checkout_subscription_idx", Checkout::Table.into_iden()),
            ("subscription_plan_idx", Subscription::Table.into_iden()),
            ("subscription_customer_idx", Subscription::Table.into_iden()),
            ("checkout_expiry_idx", Checkout::Table.into_iden()),
            ("invoice_collection_idx", Invoice::Table.into_iden()),
            ("event_subscription_idx", Event::Table.into_iden()),
            (
                "subscription_billing_due_idx",
                Subscription::Table.into_iden(),
            ),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        manager
            .alter_table(
                Table::alter()
                    .table(Subscription::Table)
                    .drop_column(Subscription::NextBillingAt)
                    .to_owned(),
            )
            .await
    }
}

// Landed migrations are never edited, so this one names its own columns.
#[derive(DeriveIden)]
enum Subscription {
    Table,
    CustomerId,
    PlanId,
    Status,
    NextBillingAt,
}

#[derive(DeriveIden)]
enum ApiKey {
    Table,
    CustomerId,
}

#[derive(DeriveIden)]
enum Event {
    Table,
    SubscriptionId,
    Seq,
}

#[derive(DeriveIden)]
enum Invoice {
    Table,
    Status,
    NextAttemptAt,
}

#[derive(DeriveIden)]
enum ProviderCustomer {
    Table,
    Provider,
    ProviderRef,
}

#[derive(DeriveIden)]
enum Checkout {
    Table,
    SubscriptionId,
    Status,
    ExpiresAt,
    NextCheckAt,
}
