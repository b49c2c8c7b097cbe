use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261122_000003_create_customer_table::Customer;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Subscription::Table)
                    .col(uuid(Subscription::Id).primary_key())
                    .col(uuid(Subscription::CustomerId))
                    .col(uuid(Subscription::PlanId))
                    .col(string(Subscription::Provider))
                    .col(string(Subscription::Status))
                    .col(timestamp_with_time_zone_null(Subscription::StartedAt))
                    .col(boolean(Subscription::CancelAtPeriodEnd))
                    .col(timestamp_with_time_zone_null(Subscription::CanceledAt))
                    .col(timestamp_with_time_zone(Subscription::CreatedAt))
                    .col(timestamp_with_time_zone(Subscription::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Subscription::Table, Subscription::CustomerId)
                            .to(Customer::Table, Customer::Id),
                    )
                    .to_owned(),
            )
            .await?;
        // One live subscription per customer, enforced by the database itself.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX subscription_one_live ON subscription (customer_id) \
                 WHERE status IN ('INCOMPLETE', 'ACTIVE', 'TRIALING', 'PAST_DUE')",
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Checkout::Table)
                    .col(uuid(Checkout::Id).primary_key())
                    .col(uuid(Checkout::SubscriptionId))
                    .col(string(Checkout::Provider))
                    .col(string(Checkout::ProviderRef))
                    .col(text(Checkout::Url))
                    .col(text(Checkout::Amount))
                    .col(string(Checkout::Currency))
                    .col(string(Checkout::Status))
                    .col(text_null(Checkout::FailureReason))
                    .col(text(Checkout::SuccessUrl))
                    .col(text(Checkout::CancelUrl))
                    .col(timestamp_with_time_zone(Checkout::ExpiresAt))
                    .col(integer(Checkout::StatusChecks))
                    .col(timestamp_with_time_zone_null(Checkout::NextCheckAt))
                    .col(timestamp_with_time_zone(Checkout::CreatedAt))
                    .col(timestamp_with_time_zone(Checkout::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Checkout::Table, Checkout::SubscriptionId)
                            .to(Subscription::Table, Subscription::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("checkout_provider_ref_uniq")
                    .table(Checkout::Table)
                    .col(Checkout::Provider)
                    .col(Checkout::ProviderRef)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProviderCustomer::Table)
                    .col(uuid(ProviderCustomer::CustomerId))
                    .col(string(ProviderCustomer::Provider))
                    .col(string(ProviderCustomer::ProviderRef))
                    .primary_key(
                        Index::create()
                            .col(ProviderCustomer::CustomerId)
                            .col(ProviderCustomer::Provider),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProviderEvent::Table)
                    .col(string(ProviderEvent::Provider))
                    .col(string(ProviderEvent::EventId))
                    .col(timestamp_with_time_zone(ProviderEvent::ReceivedAt))
                    .primary_key(
                        Index::create()
                            .col(ProviderEvent::Provider)
                            .col(ProviderEvent::EventId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Event::Table)
                    .col(big_pk_auto(Event::Seq))
                    .col(uuid_uniq(Event::Id))
                    .col(uuid(Event::CustomerId))
                    .col(uuid_null(Event::SubscriptionId))
                    .col(string(Event::Kind))
                    .col(text(Event::Data))
                    .col(timestamp_with_time_zone(Event::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("event_customer_idx")
                    .table(Event::Table)
                    .col(Event::CustomerId)
                    .col(Event::Seq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKey::Table)
                    .col(string(IdempotencyKey::Scope))
                    .col(string(IdempotencyKey::Key))
                    .col(string(IdempotencyKey::Operation))
                    .col(string(IdempotencyKey::RequestHash))
                    .col(text_null(IdempotencyKey::Response))
                    .col(timestamp_with_time_zone(IdempotencyKey::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(IdempotencyKey::Scope)
                            .col(IdempotencyKey::Key),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKey::Table.into_iden(),
            Event::Table.into_iden(),
            ProviderEvent::Table.into_iden(),
            ProviderCustomer::Table.into_iden(),
            Checkout::Table.into_iden(),
            Subscription::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
pub enum Subscription {
    Table,
    Id,
    CustomerId,
    PlanId,
    Provider,
    Status,
    StartedAt,
    CancelAtPeriodEnd,
    CanceledAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Checkout {
    Table,
    Id,
    SubscriptionId,
    Provider,
    ProviderRef,
    Url,
    Amount,
    Currency,
    Status,
    FailureReason,
    SuccessUrl,
    CancelUrl,
    ExpiresAt,
    StatusChecks,
    NextCheckAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ProviderCustomer {
    Table,
    CustomerId,
    Provider,
    ProviderRef,
}

#[derive(DeriveIden)]
enum ProviderEvent {
    Table,
    Provider,
    EventId,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum Event {
    Table,
    Seq,
    Id,
    CustomerId,
    SubscriptionId,
    Kind,
    Data,
    CreatedAt,
}

#[derive(DeriveIden)]
enum IdempotencyKey {
    Table,
    Scope,
    Key,
    Operation,
    RequestHash,
    Response,
    CreatedAt,
}
