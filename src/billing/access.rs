//! Who is calling: bearer tokens, their roles, and the API keys that carry them.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use entity::api_key;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DatabaseBackend, EntityTrait, PaginatorTrait,
    QueryFilter, QueryOrder, Set,
};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Billing;
use super::codes::{Code, Role, parse};
use super::error::{BillingError, BillingResult};

/// The caller of an operation, as established from its token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin,
    /// A project's backend: records usage and holds limits for any customer, reads
    /// customers and entitlements, nothing else.
    Service,
    Customer(Uuid),
    Anonymous,
}

impl Principal {
    pub fn require_admin(&self) -> BillingResult<()> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Service | Principal::Customer(_) => Err(BillingError::Forbidden),
            Principal::Anonymous => Err(BillingError::Unauthenticated),
        }
    }

    /// Backend work: recording usage, acquiring and releasing limits, listing customers.
    /// A customer key lives in a browser, so it may not do it, even for itself.
    pub fn require_backend(&self) -> BillingResult<()> {
        match self {
            Principal::Admin | Principal::Service => Ok(()),
            Principal::Customer(_) => Err(BillingError::Forbidden),
            Principal::Anonymous => Err(BillingError::Unauthenticated),
        }
    }

    /// Admins see every customer; a customer sees only itself. Anything else is answered
    /// as if the customer did not exist, so ids cannot be probed. Service keys reach a
    /// customer only through [`Self::require_customer_read`].
    pub fn require_customer_access(&self, customer_id: Uuid) -> BillingResult<()> {
        match self {
            Principal::Admin => Ok(()),
            Principal::Customer(own) if *own == customer_id => Ok(()),
            Principal::Customer(_) => Err(BillingError::not_found("customer", customer_id)),
            Principal::Service => Err(BillingError::Forbidden),
            Principal::Anonymous => Err(BillingError::Unauthenticated),
        }
    }

    /// Reading a customer's details and entitlements: also service keys.
    pub fn require_customer_read(&self, customer_id: Uuid) -> BillingResult<()> {
        match self {
            Principal::Service => Ok(()),
            other => other.require_customer_access(customer_id),
        }
    }

    pub fn customer_id(&self) -> Option<Uuid> {
        match self {
            Principal::Customer(id) => Some(*id),
            _ => None,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(self, Principal::Admin)
    }
}

/// A freshly issued key: the only moment its token is visible.
#[derive(Clone, Debug)]
pub struct IssuedKey {
    pub key: ApiKey,
    pub token: String,
}

#[derive(Clone, Debug)]
pub struct ApiKey {
    pub id: Uuid,
    pub role: Role,
    pub customer_id: Option<Uuid>,
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub name: Option<String>,
}

impl TryFrom<api_key::Model> for ApiKey {
    type Error = sea_orm::DbErr;
    fn try_from(m: api_key::Model) -> Result<Self, Self::Error> {
        Ok(ApiKey {
            id: m.id,
            role: parse(&m.role)?,
            customer_id: m.customer_id,
            prefix: m.prefix,
            created_at: m.created_at,
            revoked_at: m.revoked_at,
            name: m.name,
        })
    }
}

/// The stored form of a token: its SHA-256, in lowercase hex. Runs on every request (the
/// token check, the rate limit), so it writes the hex into one string.
pub fn hash_token(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    lower_hex(&digest)
}

fn lower_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// A new random token: 32 bytes from the OS, hex, behind a recognizable prefix.
pub fn new_token(prefix: &str) -> String {
    let mut bytes = [0u8; 32];
    // The OS random source failing is unrecoverable for issuing secrets.
    getrandom::fill(&mut bytes).expect("the operating system's random source failed");
    let hex = lower_hex(&bytes);
    format!("{prefix}{hex}")
}

/// Recently seen token hashes, so that a request does not cost a key lookup. Entries
/// live a second; a revocation (local, or another replica's through NOTIFY) drops them
/// at once.
#[derive(Default)]
pub(crate) struct TokenCache {
    entries: RwLock<HashMap<String, (Principal, Uuid, Instant)>>,
}

const TOKEN_TTL: Duration = Duration::from_secs(1);

/// The PostgreSQL channel that carries revoked key ids to every replica.
pub const REVOCATION_CHANNEL: &str = "billing_revocations";

impl TokenCache {
    fn get(&self, hash: &str) -> Option<(Principal, Uuid)> {
        let map = self.entries.read().unwrap_or_else(|p| p.into_inner());
        map.get(hash)
            .filter(|(_, _, at)| at.elapsed() < TOKEN_TTL)
            .map(|(p, k, _)| (*p, *k))
    }

    fn put(&self, hash: String, principal: Principal, key: Uuid) {
        let mut map = self.entries.write().unwrap_or_else(|p| p.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, (_, _, at)| at.elapsed() < TOKEN_TTL);
        }
        map.insert(hash, (principal, key, Instant::now()));
    }

    fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

impl Billing {
    /// Establishes the caller from a bearer token (None: anonymous).
    pub async fn authenticate(&self, token: Option<&str>) -> BillingResult<Principal> {
        Ok(self.authenticate_key(token).await?.0)
    }

    /// The caller and the key its token belongs to (none for anonymous callers).
    pub async fn authenticate_key(
        &self,
        token: Option<&str>,
    ) -> BillingResult<(Principal, Option<Uuid>)> {
        let Some(token) = token.map(str::trim).filter(|t| !t.is_empty()) else {
            return Ok((Principal::Anonymous, None));
        };
        let hash = hash_token(token);
        if let Some((p, key)) = self.tokens.get(&hash) {
            return Ok((p, Some(key)));
        }
        let key = api_key::Entity::find()
            .filter(api_key::Column::TokenHash.eq(hash.as_str()))
            .filter(api_key::Column::RevokedAt.is_null())
            .one(self.db.conn())
            .await?
            .ok_or(BillingError::BadToken)?;
        let principal = match (parse::<Role>(&key.role)?, key.customer_id) {
            (Role::Admin, _) => Principal::Admin,
            (Role::Service, _) => Principal::Service,
            (Role::Customer, Some(c)) => Principal::Customer(c),
            (Role::Customer, None) => return Err(BillingError::BadToken),
        };
        self.tokens.put(hash, principal, key.id);
        Ok((principal, Some(key.id)))
    }

    /// Whether a key still stands (unknown keys and database errors: no).
    pub async fn key_is_live(&self, key: Option<Uuid>) -> bool {
        let Some(key) = key else { return false };
        matches!(
            api_key::Entity::find_by_id(key).one(self.db.conn()).await,
            Ok(Some(k)) if k.revoked_at.is_none()
        )
    }

    /// Drops every cached token (e.g. after missing revocations while disconnected).
    pub fn tokens_may_be_stale(&self) {
        self.tokens.clear();
    }

    /// Revoked keys, as they are revoked here or (on PostgreSQL) on any replica.
    pub fn revocations(&self) -> tokio::sync::broadcast::Receiver<Uuid> {
        self.revoked.subscribe()
    }

    /// A key was revoked (here, or on another replica): its cached tokens go, and its
    /// open websockets are told.
    pub fn key_revoked(&self, key: Uuid) {
        self.tokens.clear();
        let _ = self.revoked.send(key);
    }

    /// Makes `token` the admin token (from configuration): every other admin credential is
    /// revoked, so that a rotation takes effect with the restart. Idempotent. Nothing of
    /// a configured token is stored in clear.
    pub async fn ensure_admin_token(&self, token: &str) -> BillingResult<()> {
        let hash = hash_token(token);
        let now = self.clock.now();
        let txn = self.db.write().await?;
        let revoked = api_key::Entity::update_many()
            .col_expr(api_key::Column::RevokedAt, Expr::value(Some(now)))
            .filter(api_key::Column::Role.eq(Role::Admin.code()))
            .filter(api_key::Column::TokenHash.ne(hash.as_str()))
            .filter(api_key::Column::RevokedAt.is_null())
            .exec(&*txn)
            .await?
            .rows_affected;
        let existing = api_key::Entity::find()
            .filter(api_key::Column::TokenHash.eq(hash.as_str()))
            .one(&*txn)
            .await?;
        match existing {
            Some(k) if k.role != Role::Admin.code() => {
                return Err(BillingError::invalid(
                    "BILLING_ADMIN_TOKEN is already another key's token",
                ));
            }
            // Configured again after a rotation away from it.
            Some(k) if k.revoked_at.is_some() => {
                api_key::Entity::update_many()
                    .col_expr(
                        api_key::Column::RevokedAt,
                        Expr::value(None::<DateTime<Utc>>),
                    )
                    .filter(api_key::Column::Id.eq(k.id))
                    .exec(&*txn)
                    .await?;
            }
            Some(_) => {}
            None => {
                api_key::ActiveModel {
                    id: Set(Uuid::now_v7()),
                    role: Set(Role::Admin.code().to_owned()),
                    customer_id: Set(None),
                    token_hash: Set(hash),
                    prefix: Set(String::new()),
                    created_at: Set(now),
                    revoked_at: Set(None),
                    name: Set(None),
                }
                .insert(&*txn)
                .await?;
            }
        }
        txn.commit().await?;
        if revoked > 0 {
            tracing::info!(revoked, "earlier admin credentials revoked");
            self.tokens.clear();
        }
        Ok(())
    }

    /// On a database without any admin key, creates one and returns its token.
    pub async fn bootstrap_admin(&self) -> BillingResult<Option<String>> {
        let admins = api_key::Entity::find()
            .filter(api_key::Column::Role.eq(Role::Admin.code()))
            .count(self.db.conn())
            .await?;
        if admins > 0 {
            return Ok(None);
        }
        let token = new_token("bk_admin_");
        self.insert_key(Role::Admin, None, &token, None).await?;
        Ok(Some(token))
    }

    async fn insert_key(
        &self,
        role: Role,
        customer_id: Option<Uuid>,
        token: &str,
        name: Option<String>,
    ) -> BillingResult<ApiKey> {
        let _slot = self.db.writer_slot().await;
        let model = api_key::ActiveModel {
            id: Set(Uuid::now_v7()),
            role: Set(role.code().to_owned()),
            customer_id: Set(customer_id),
            token_hash: Set(hash_token(token)),
            prefix: Set(token.chars().take(12).collect()),
            created_at: Set(self.clock.now()),
            revoked_at: Set(None),
            name: Set(name),
        }
        .insert(self.db.conn())
        .await?;
        Ok(model.try_into()?)
    }

    /// Issues an API key for one customer; its token is returned once and stored hashed.
    pub async fn create_api_key(
        &self,
        who: &Principal,
        customer_id: Uuid,
    ) -> BillingResult<IssuedKey> {
        who.require_admin()?;
        self.customer_model(customer_id).await?;
        let token = new_token("bk_cust_");
        let key = self
            .insert_key(Role::Customer, Some(customer_id), &token, None)
            .await?;
        Ok(IssuedKey { key, token })
    }

    /// Issues a service key (a project's backend); its token is returned once.
    pub async fn create_service_key(
        &self,
        who: &Principal,
        name: &str,
    ) -> BillingResult<IssuedKey> {
        who.require_admin()?;
        let name = super::validate::text("name", name, 200)?;
        let token = new_token("bk_svc_");
        let key = self
            .insert_key(Role::Service, None, &token, Some(name))
            .await?;
        Ok(IssuedKey { key, token })
    }

    /// Admin: the service keys, oldest first.
    pub async fn service_keys(&self, who: &Principal) -> BillingResult<Vec<ApiKey>> {
        who.require_admin()?;
        api_key::Entity::find()
            .filter(api_key::Column::Role.eq(Role::Service.code()))
            .order_by_asc(api_key::Column::CreatedAt)
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(|m| m.try_into().map_err(BillingError::from))
            .collect()
    }

    pub async fn revoke_api_key(&self, who: &Principal, id: Uuid) -> BillingResult<ApiKey> {
        who.require_admin()?;
        let key = api_key::Entity::find_by_id(id)
            .one(self.db.conn())
            .await?
            .ok_or_else(|| BillingError::not_found("API key", id))?;
        let key = if key.revoked_at.is_none() {
            let txn = self.db.write().await?;
            let mut am: api_key::ActiveModel = key.into();
            am.revoked_at = Set(Some(self.clock.now()));
            let key = am.update(&*txn).await?;
            if txn.get_database_backend() == DatabaseBackend::Postgres {
                // Delivered to every replica when (and only if) the revocation commits.
                txn.execute_unprepared(&format!(
                    "SELECT pg_notify('{REVOCATION_CHANNEL}', '{}')",
                    key.id
                ))
                .await?;
            }
            txn.commit().await?;
            key
        } else {
            key
        };
        self.key_revoked(key.id);
        Ok(key.try_into()?)
    }

    pub async fn api_keys(&self, who: &Principal, customer_id: Uuid) -> BillingResult<Vec<ApiKey>> {
        who.require_admin()?;
        api_key::Entity::find()
            .filter(api_key::Column::CustomerId.eq(customer_id))
            .order_by_asc(api_key::Column::CreatedAt)
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(|m| m.try_into().map_err(BillingError::from))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_hashes_to_the_lowercase_hex_of_its_sha256() {
        // FIPS 180-2's test vector for "abc".
        assert_eq!(
            hash_token("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(lower_hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }
}
