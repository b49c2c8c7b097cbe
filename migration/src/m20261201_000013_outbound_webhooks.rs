use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Outbound webhooks (Standard Webhooks): endpoints with their signing secret and their
/// position in the event log, one delivery per endpoint and event, and every attempt.
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(WebhookEndpoint::Table)
                    .col(uuid(WebhookEndpoint::Id).primary_key())
                    .col(text(WebhookEndpoint::Url))
                    .col(text_null(WebhookEndpoint::EventKinds))
                    .col(text(WebhookEndpoint::Secret))
                    .col(boolean(WebhookEndpoint::Enabled))
                    .col(big_integer(WebhookEndpoint::Cursor))
                    .col(timestamp_with_time_zone(WebhookEndpoint::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookEndpoint::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookDelivery::Table)
                    .col(uuid(WebhookDelivery::Id).primary_key())
                    .col(uuid(WebhookDelivery::EndpointId))
                    .col(big_integer(WebhookDelivery::EventSeq))
                    .col(uuid(WebhookDelivery::EventId))
                    .col(string(WebhookDelivery::EventKind))
                    .col(uuid(WebhookDelivery::CustomerId))
                    .col(string(WebhookDelivery::Status))
                    .col(integer(WebhookDelivery::Attempts))
                    .col(integer(WebhookDelivery::RoundAttempts))
                    .col(timestamp_with_time_zone_null(
                        WebhookDelivery::NextAttemptAt,
                    ))
                    .col(timestamp_with_time_zone_null(WebhookDelivery::LeaseUntil))
                    .col(uuid_null(WebhookDelivery::LeaseToken))
                    .col(timestamp_with_time_zone(WebhookDelivery::CreatedAt))
                    .col(timestamp_with_time_zone(WebhookDelivery::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookDelivery::Table, WebhookDelivery::EndpointId)
                            .to(WebhookEndpoint::Table, WebhookEndpoint::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One delivery per endpoint and event, whichever process fans the event out.
        manager
            .create_index(
                Index::create()
                    .name("webhook_delivery_event_uniq")
                    .table(WebhookDelivery::Table)
                    .col(WebhookDelivery::EndpointId)
                    .col(WebhookDelivery::EventSeq)
                    .unique()
                    .to_owned(),
            )
            .await?;
        // The head of each endpoint's queue per customer.
        manager
            .create_index(
                Index::create()
                    .name("webhook_delivery_queue_idx")
                    .table(WebhookDelivery::Table)
                    .col(WebhookDelivery::EndpointId)
                    .col(WebhookDelivery::CustomerId)
                    .col(WebhookDelivery::Status)
                    .col(WebhookDelivery::EventSeq)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_delivery_due_idx")
                    .table(WebhookDelivery::Table)
                    .col(WebhookDelivery::Status)
                    .col(WebhookDelivery::NextAttemptAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(WebhookAttempt::Table)
                    .col(uuid(WebhookAttempt::Id).primary_key())
                    .col(uuid(WebhookAttempt::DeliveryId))
                    .col(integer(WebhookAttempt::Number))
                    .col(timestamp_with_time_zone(WebhookAttempt::At))
                    .col(integer_null(WebhookAttempt::HttpStatus))
                    .col(text_null(WebhookAttempt::Error))
                    .col(big_integer(WebhookAttempt::DurationMs))
                    .foreign_key(
                        ForeignKey::create()
                            .from(WebhookAttempt::Table, WebhookAttempt::DeliveryId)
                            .to(WebhookDelivery::Table, WebhookDelivery::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("webhook_attempt_delivery_idx")
                    .table(WebhookAttempt::Table)
                    .col(WebhookAttempt::DeliveryId)
                    .col(WebhookAttempt::Number)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(WebhookAttempt::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(WebhookDelivery::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(WebhookEndpoint::Table).to_owned())
            .await?;
        Ok(())
    }
}

#[derive(DeriveIden)]
enum WebhookEndpoint {
    Table,
    Id,
    Url,
    EventKinds,
    Secret,
    Enabled,
    Cursor,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookDelivery {
    Table,
    Id,
    EndpointId,
    EventSeq,
    EventId,
    EventKind,
    CustomerId,
    Status,
    Attempts,
    RoundAttempts,
    NextAttemptAt,
    LeaseUntil,
    LeaseToken,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum WebhookAttempt {
    Table,
    Id,
    DeliveryId,
    Number,
    At,
    HttpStatus,
    Error,
    DurationMs,
}
