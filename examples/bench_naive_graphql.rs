//! The benchmark's second reference (`cargo bench --bench api` starts it; not part of the
//! server): async-graphql + SeaORM built the plainest way, as a tutorial would. One
//! `customer(id)` query that loads the SeaORM model by primary key, served by
//! async-graphql-axum on `POST /graphql`, no authentication, loaders or extensions; the
//! SeaORM connection with its default options.
//!
//! `bench_naive_graphql <sqlite file> <bind address>`; prints `listening <addr>` when ready.

use async_graphql::{Context, EmptyMutation, EmptySubscription, ID, Object, Schema, SimpleObject};
use async_graphql_axum::GraphQL;
use axum::routing::post_service;
use sea_orm::{Database, DatabaseConnection, EntityTrait};

#[derive(SimpleObject)]
struct Customer {
    id: ID,
    external_id: String,
    name: String,
    email: String,
    currency: String,
}

struct Query;

#[Object]
impl Query {
    async fn customer(&self, ctx: &Context<'_>, id: ID) -> async_graphql::Result<Option<Customer>> {
        let db = ctx.data::<DatabaseConnection>()?;
        let id = uuid::Uuid::parse_str(&id)?;
        let found = entity::customer::Entity::find_by_id(id).one(db).await?;
        Ok(found.map(|c| Customer {
            id: ID(c.id.to_string()),
            external_id: c.external_id,
            name: c.name,
            email: c.email,
            currency: c.currency,
        }))
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(file), Some(bind)) = (args.next(), args.next()) else {
        return Err("usage: bench_naive_graphql <sqlite file> <bind address>".into());
    };
    let db = Database::connect(format!("sqlite://{file}?mode=ro")).await?;
    let schema = Schema::build(Query, EmptyMutation, EmptySubscription)
        .data(db)
        .finish();
    let listener = tokio::net::TcpListener::bind(&bind).await?;
    println!("listening {}", listener.local_addr()?);
    let app = axum::Router::new().route("/graphql", post_service(GraphQL::new(schema)));
    axum::serve(listener, app).await?;
    Ok(())
}
