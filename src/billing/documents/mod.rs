//! What a customer receives: an issued invoice as a document (an HTML page to print, the
//! same as PDF) behind an unguessable signed link, and gapless invoice numbers.
//!
//! Links are signed with HMAC-SHA256 under one secret per installation: the configured
//! `BILLING_DOCUMENT_SECRET`, or else a random one stored in the database on first start,
//! so every replica on the database signs and checks alike. A link whose signature does
//! not match answers the same refusal whether or not the invoice exists.

pub mod html;
pub mod number;
pub mod pdf;

use chrono::{DateTime, Utc};
use entity::{customer, invoice, invoice_line, setting, subscription};
use hmac::{Hmac, Mac};
use rust_decimal::Decimal;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, Set};
use sha2::Sha256;
use uuid::Uuid;

use super::Billing;
use super::error::BillingError;

type HmacSha256 = Hmac<Sha256>;

/// Where the generated secret is kept when none is configured.
const SECRET_KEY: &str = "document_secret";

/// Who sends the invoices, as printed on them.
#[derive(Clone, Debug, Default)]
pub struct Merchant {
    pub name: String,
    /// Address lines, in print order.
    pub address: Vec<String>,
}

impl Merchant {
    /// `address` holds lines separated by newlines or `;`.
    pub fn new(name: &str, address: Option<&str>) -> Self {
        Merchant {
            name: name.trim().to_owned(),
            address: address
                .unwrap_or_default()
                .split(['\n', ';'])
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect(),
        }
    }
}

/// Signs and checks the links of customer-facing pages.
#[derive(Clone)]
pub struct Documents {
    pub public_url: String,
    pub merchant: Merchant,
    secret: Vec<u8>,
}

impl Documents {
    pub fn new(public_url: &str, merchant: Merchant, secret: &str) -> Self {
        Documents {
            public_url: public_url.trim_end_matches('/').to_owned(),
            merchant,
            secret: secret.as_bytes().to_vec(),
        }
    }

    /// The configured secret, or the installation's stored one (created on first use, the
    /// same for every process on the database).
    pub async fn secret(
        db: &impl ConnectionTrait,
        configured: Option<&str>,
    ) -> Result<String, DbErr> {
        if let Some(s) = configured {
            return Ok(s.trim().to_owned());
        }
        setting::Entity::insert(setting::ActiveModel {
            key: Set(SECRET_KEY.to_owned()),
            value: Set(super::access::new_token("docsec_")),
        })
        .on_conflict_do_nothing()
        .exec(db)
        .await?;
        setting::Entity::find_by_id(SECRET_KEY.to_owned())
            .one(db)
            .await?
            .map(|s| s.value)
            .ok_or_else(|| DbErr::RecordNotFound("the document secret".into()))
    }

    fn mac(&self, message: &str) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(message.as_bytes());
        mac
    }

    /// The signature of `message`, hex.
    pub fn sign(&self, message: &str) -> String {
        self.mac(message)
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    /// Whether `signature` (hex) signs `message`, compared in constant time.
    pub fn verify(&self, message: &str, signature: &str) -> bool {
        let Some(bytes) = unhex(signature) else {
            return false;
        };
        self.mac(message).verify_slice(&bytes).is_ok()
    }

    /// The printable page of an issued invoice.
    pub fn invoice_url(&self, id: Uuid) -> String {
        format!(
            "{}/documents/invoices/{id}?sig={}",
            self.public_url,
            self.sign(&invoice_message(id))
        )
    }

    /// The same invoice as PDF.
    pub fn invoice_pdf_url(&self, id: Uuid) -> String {
        format!(
            "{}/documents/invoices/{id}/pdf?sig={}",
            self.public_url,
            self.sign(&invoice_message(id))
        )
    }
}

fn invoice_message(id: Uuid) -> String {
    format!("invoice:{id}")
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// Why a customer-facing page is not shown. The page says only this much.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    /// A missing or wrong signature (403).
    #[error("this link is not valid")]
    Refused,
    /// A signed link past its time (410).
    #[error("this link has expired")]
    Expired,
    /// Signed, but what it names is gone (404).
    #[error("not found")]
    NotFound,
    #[error(transparent)]
    Billing(#[from] BillingError),
}

impl From<DbErr> for PageError {
    fn from(e: DbErr) -> Self {
        PageError::Billing(e.into())
    }
}

/// One line of an invoice document.
#[derive(Clone, Debug)]
pub struct DocumentLine {
    pub product: String,
    /// `RECURRING`, `METERED`, `PREPAID`
    pub kind: String,
    /// `TRIAL`, `DISCOUNT`, `FINAL`
    pub phase: String,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub quantity: Decimal,
    pub unit_amount: Decimal,
    pub amount: Decimal,
}

/// Everything an invoice document shows.
#[derive(Clone, Debug)]
pub struct InvoiceDocument {
    pub id: Uuid,
    pub number: String,
    /// `OPEN`, `PAID`, `VOID`, `UNCOLLECTIBLE`
    pub status: String,
    pub issued_at: DateTime<Utc>,
    pub period_start: DateTime<Utc>,
    pub period_end: DateTime<Utc>,
    pub currency: String,
    pub total: Decimal,
    pub plan: Option<String>,
    pub merchant: Merchant,
    pub customer_name: String,
    pub customer_email: String,
    /// The customer's address lines, in print order.
    pub customer_address: Vec<String>,
    pub lines: Vec<DocumentLine>,
    pub pdf_url: String,
}

fn address_lines(c: &customer::Model) -> Vec<String> {
    let city = [c.postal_code.as_deref(), c.city.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    [
        c.address_line1.clone(),
        c.address_line2.clone(),
        Some(city),
        c.state.clone(),
        c.country.clone(),
    ]
    .into_iter()
    .flatten()
    .filter(|l| !l.trim().is_empty())
    .collect()
}

impl Billing {
    /// An issued invoice's document, for a link signed by [`Documents::invoice_url`].
    pub async fn invoice_document(
        &self,
        id: Uuid,
        signature: Option<&str>,
    ) -> Result<InvoiceDocument, PageError> {
        if !signature.is_some_and(|s| self.documents.verify(&invoice_message(id), s)) {
            return Err(PageError::Refused);
        }
        let db = self.db.conn();
        let inv = invoice::Entity::find_by_id(id)
            .one(db)
            .await?
            .ok_or(PageError::NotFound)?;
        // Only issued invoices have documents (every stored one is issued and numbered).
        let number = inv.number.clone().ok_or(PageError::NotFound)?;
        let lines = invoice_line::Entity::find()
            .filter(invoice_line::Column::InvoiceId.eq(id))
            .order_by_asc(invoice_line::Column::Position)
            .all(db)
            .await?;
        let customer = customer::Entity::find_by_id(inv.customer_id)
            .one(db)
            .await?
            .ok_or(PageError::NotFound)?;
        let plan_id = subscription::Entity::find_by_id(inv.subscription_id)
            .one(db)
            .await?
            .map(|s| s.plan_id);
        let catalog = self.catalog_with(plan_id).await?;
        Ok(InvoiceDocument {
            id,
            number,
            status: inv.status,
            issued_at: inv.created_at,
            period_start: inv.period_start,
            period_end: inv.period_end,
            currency: inv.currency,
            total: inv.total.0,
            plan: plan_id.and_then(|p| catalog.plan(p).map(|p| p.name.clone())),
            merchant: self.documents.merchant.clone(),
            customer_name: customer.name.clone(),
            customer_email: customer.email.clone(),
            customer_address: address_lines(&customer),
            lines: lines
                .into_iter()
                .map(|l| DocumentLine {
                    product: catalog
                        .product(l.product_id)
                        .map_or_else(|| l.product_id.to_string(), |p| p.name.clone()),
                    kind: l.kind,
                    phase: l.phase,
                    start: l.start,
                    end: l.end,
                    quantity: l.quantity.0,
                    unit_amount: l.unit_amount.0,
                    amount: l.amount.0,
                })
                .collect(),
            pdf_url: self.documents.invoice_pdf_url(id),
        })
    }

    /// The numbers of stored invoices, by id (for DataLoaders).
    pub async fn invoice_numbers(
        &self,
        ids: &[Uuid],
    ) -> Result<Vec<(Uuid, Option<String>)>, BillingError> {
        Ok(invoice::Entity::find()
            .filter(invoice::Column::Id.is_in(ids.iter().copied()))
            .all(self.db.conn())
            .await?
            .into_iter()
            .map(|i| (i.id, i.number))
            .collect())
    }
}

/// `12.5` → `12.50`; more places are kept as they are (`0.0125`).
pub fn plain_amount(amount: Decimal) -> String {
    let mut a = amount.normalize();
    if a.scale() < 2 {
        a.rescale(2);
    }
    a.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docs(secret: &str) -> Documents {
        Documents::new("http://x", Merchant::new("M", None), secret)
    }

    #[test]
    fn a_signature_verifies_only_under_its_secret_and_message() {
        let d = docs("s1");
        let sig = d.sign("invoice:a");
        assert!(d.verify("invoice:a", &sig));
        assert!(!d.verify("invoice:b", &sig));
        assert!(!docs("s2").verify("invoice:a", &sig));
        let mut tampered = sig.clone();
        tampered.replace_range(0..1, if &sig[0..1] == "0" { "1" } else { "0" });
        assert!(!d.verify("invoice:a", &tampered));
        assert!(!d.verify("invoice:a", ""));
        assert!(!d.verify("invoice:a", &sig[..62]));
    }

    #[test]
    fn merchant_address_lines_split_on_newlines_and_semicolons() {
        let m = Merchant::new(" Acme ", Some("1 Main St; 0150 Oslo\nNorway;"));
        assert_eq!(m.name, "Acme");
        assert_eq!(m.address, ["1 Main St", "0150 Oslo", "Norway"]);
    }

    #[test]
    fn amounts_show_at_least_two_places() {
        assert_eq!(plain_amount(Decimal::new(125, 1)), "12.50");
        assert_eq!(plain_amount(Decimal::new(125, 4)), "0.0125");
        assert_eq!(plain_amount(Decimal::new(1000, 3)), "1.00");
    }
}
