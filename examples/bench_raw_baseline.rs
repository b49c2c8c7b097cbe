//! The benchmark's raw baseline (`cargo bench --bench api` starts it; not part of the
//! server): axum 0.8 with `GET /customer/{id}`, one hand-written sqlx query on a read-only
//! SQLite pool of 16 connections, the same JSON shape as the GraphQL answer.
//!
//! `bench_raw_baseline <sqlite file> <bind address>`; prints `listening <addr>` when ready.
//! Honours `TOKIO_WORKER_THREADS` like any tokio runtime.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sea_orm::sqlx::SqlitePool;
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
use serde_json::json;
use uuid::Uuid;

/// id, external_id, name, email, currency
type CustomerRow = (Uuid, String, String, String, String);

async fn customer(State(pool): State<SqlitePool>, Path(id): Path<String>) -> Response {
    let Ok(id) = Uuid::parse_str(&id) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let row: Result<Option<CustomerRow>, _> = sea_orm::sqlx::query_as(
        "SELECT id, external_id, name, email, currency FROM customer WHERE id = ?",
    )
    .bind(id)
    .fetch_optional(&pool)
    .await;
    match row {
        Ok(Some((id, external_id, name, email, currency))) => Json(json!({
            "data": { "customer": {
                "id": id.to_string(),
                "externalId": external_id,
                "name": name,
                "email": email,
                "currency": currency,
            }}
        }))
        .into_response(),
        Ok(None) => StatusCode::NOT_FOUND.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(bind)) = (args.next(), args.next()) else {
        return Err("usage: bench_raw_baseline <sqlite file> <bind address>".into());
    };
    let pool = SqlitePoolOptions::new()
        .max_connections(16)
        .connect_with(SqliteConnectOptions::new().filename(file).read_only(true))
        .await?;
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening {}", listener.local_addr()?);
    let app = axum::Router::new()
        .route("/customer/{id}", get(customer))
        .with_state(pool);
    axum::serve(listener, app).await?;
    Ok(())
}
