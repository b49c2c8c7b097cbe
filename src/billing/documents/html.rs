//! The invoice as a printable HTML page, and the frame the customer-facing pages share
//! with the sandbox's checkout pages (the same style sheet). Every interpolated string
//! goes through `escape`.

use chrono::{DateTime, Utc};
use providers::pages::{STYLE, escape};

use super::{InvoiceDocument, plain_amount};

/// Rules the checkout pages do not need: tables, wider pages, print.
const EXTRA_STYLE: &str = r#"
main.wide{max-width:52rem}
table{width:100%;border-collapse:collapse;margin:1rem 0;font-size:.95rem}
th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #d6d9de;vertical-align:top}
th{font-weight:600;color:#46505c}
td.num,th.num{text-align:right;white-space:nowrap}
tr.total td{font-weight:700;border-bottom:0;font-size:1.05rem}
.cols{display:flex;gap:2rem;flex-wrap:wrap;justify-content:space-between}
.cols>div{min-width:12rem}
.muted{color:#46505c}
.status{display:inline-block;border:1px solid #8a939e;border-radius:999px;padding:0 .6rem;font-size:.85rem;font-weight:600}
form.inline{display:inline}
@media print{body{background:#fff}main{margin:0;max-width:none}.card{border:0;padding:0}.noprint{display:none}}
"#;

/// A whole page around `body`, titled `title`; `badge` names who is speaking.
pub fn page(title: &str, badge: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <meta name=\"robots\" content=\"noindex\">\n\
         <meta name=\"referrer\" content=\"no-referrer\">\n\
         <title>{title}</title>\n<style>{STYLE}{EXTRA_STYLE}</style>\n</head>\n<body>\n\
         <main class=\"wide\">\n<div class=\"card\">\n<span class=\"badge\">{badge}</span>\n\
         {body}\n</div>\n</main>\n</body>\n</html>\n",
        title = escape(title),
        badge = escape(badge),
    )
}

/// A refusal page: says what is wrong and nothing else.
pub fn refusal(title: &str, message: &str) -> String {
    page(
        title,
        "Billing",
        &format!(
            "<h1>{}</h1>\n<p class=\"note\">{}</p>",
            escape(title),
            escape(message)
        ),
    )
}

pub fn date(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d").to_string()
}

/// `2027-01-15 – 2027-02-01` (the end is exclusive, as everywhere in billing).
pub fn span(start: DateTime<Utc>, end: DateTime<Utc>) -> String {
    format!("{} – {}", date(start), date(end))
}

fn lines_html(lines: &[String]) -> String {
    lines.iter().map(|l| format!("{}<br>", escape(l))).collect()
}

/// What a line's kind and phase mean to a customer.
pub fn describe(kind: &str, phase: &str) -> String {
    let kind = match kind {
        "METERED" => "usage",
        "PREPAID" => "paid in advance",
        "PRORATION" => "change mid-period",
        _ => "subscription",
    };
    let phase = match phase {
        "TRIAL" => "trial",
        "DISCOUNT" => "discount",
        _ => "regular price",
    };
    format!("{kind}, {phase}")
}

pub fn invoice_page(doc: &InvoiceDocument) -> String {
    let cur = escape(&doc.currency);
    let rows: String = doc
        .lines
        .iter()
        .map(|l| {
            format!(
                "<tr><td>{product}<br><span class=\"muted\">{what}</span></td>\
                 <td>{period}</td><td class=\"num\">{qty} × {unit}</td>\
                 <td class=\"num\">{amount} {cur}</td></tr>\n",
                product = escape(&l.product),
                what = escape(&describe(&l.kind, &l.phase)),
                period = escape(&span(l.start, l.end)),
                qty = escape(&l.quantity.normalize().to_string()),
                unit = escape(&plain_amount(l.unit_amount)),
                amount = escape(&plain_amount(l.amount)),
            )
        })
        .collect();
    let plan = doc
        .plan
        .as_deref()
        .map(|p| format!("<tr><th>Plan</th><td>{}</td></tr>", escape(p)))
        .unwrap_or_default();
    let body = format!(
        "<div class=\"cols\">\n<div><h1>Invoice {number}</h1>\n\
         <p><span class=\"status\" id=\"status\">{status}</span></p></div>\n\
         <div id=\"merchant\"><strong>{merchant}</strong><br>{merchant_address}</div>\n</div>\n\
         <div class=\"cols\">\n<div id=\"bill-to\"><h2>Bill to</h2>\
         <strong>{customer}</strong><br>{customer_address}{email}</div>\n\
         <div><table><tr><th>Number</th><td id=\"number\">{number}</td></tr>\
         <tr><th>Issued</th><td>{issued}</td></tr>\
         <tr><th>Period</th><td>{period}</td></tr>{plan}\
         <tr><th>Currency</th><td>{cur}</td></tr></table></div>\n</div>\n\
         <table id=\"lines\"><thead><tr><th>Item</th><th>Period</th>\
         <th class=\"num\">Quantity × unit price</th><th class=\"num\">Amount</th></tr></thead>\n\
         <tbody>\n{rows}<tr class=\"total\"><td colspan=\"3\">Total</td>\
         <td class=\"num\" id=\"total\">{total} {cur}</td></tr>\n</tbody></table>\n\
         <p class=\"links noprint\"><a href=\"{pdf}\">Download PDF</a></p>",
        number = escape(&doc.number),
        status = escape(&doc.status),
        merchant = escape(&doc.merchant.name),
        merchant_address = lines_html(&doc.merchant.address),
        customer = escape(&doc.customer_name),
        customer_address = lines_html(&doc.customer_address),
        email = escape(&doc.customer_email),
        issued = escape(&date(doc.issued_at)),
        period = escape(&span(doc.period_start, doc.period_end)),
        total = escape(&plain_amount(doc.total)),
        pdf = escape(&doc.pdf_url),
    );
    page(
        &format!("Invoice {} · {}", doc.number, doc.merchant.name),
        &doc.merchant.name,
        &body,
    )
}

/// A notice the portal shows after an action (the only unsigned part of its address:
/// it picks one of these fixed sentences).
pub fn portal_notice(code: &str) -> Option<&'static str> {
    match code {
        "canceled" => {
            Some("Your subscription will be canceled at the end of the current billing period.")
        }
        "already" => Some("Your subscription is already set to cancel at the end of the period."),
        _ => None,
    }
}

fn phase_name(p: crate::billing::phase::PhaseKind) -> &'static str {
    use crate::billing::phase::PhaseKind;
    match p {
        PhaseKind::Trial => "Trial",
        PhaseKind::Discount => "Discount",
        PhaseKind::Final => "Regular price",
    }
}

/// The customer portal. `query` is the signed link's query string (for its forms and
/// links); `notice` what the last action did.
pub fn portal_page(
    view: &crate::billing::portal::PortalView,
    customer_id: uuid::Uuid,
    query: &str,
    notice: Option<&str>,
) -> String {
    use crate::billing::codes::Code;
    let notice = notice
        .map(|n| {
            format!(
                "<p class=\"ok\" role=\"status\" id=\"notice\">{}</p>\n",
                escape(n)
            )
        })
        .unwrap_or_default();
    let subscription = match &view.subscription {
        None => "<p class=\"note\">You have no subscription.</p>".to_owned(),
        Some(s) => {
            let phase_ends = s
                .phase_ends
                .map(|e| format!(" until {}", date(e)))
                .unwrap_or_default();
            let cancel = if s.subscription.cancel_at_period_end {
                format!(
                    "<p id=\"cancellation\">Cancels at the end of the period{}.</p>",
                    s.subscription
                        .canceled_at
                        .map(|t| format!(", on {}", date(t)))
                        .unwrap_or_default()
                )
            } else if s.subscription.status.is_live() {
                format!(
                    "<form method=\"post\" action=\"{action}\" class=\"noprint\">\
                     <button type=\"submit\" class=\"secondary\">Cancel at period end</button></form>",
                    action = escape(&format!("{customer_id}/cancel?{query}")),
                )
            } else {
                String::new()
            };
            format!(
                "<table id=\"subscription\"><tr><th>Plan</th><td id=\"plan\">{plan}</td></tr>\
                 <tr><th>Phase</th><td id=\"phase\">{phase}{phase_ends}</td></tr>\
                 <tr><th>Status</th><td id=\"status\">{status}</td></tr>{period}</table>\n{cancel}",
                plan = escape(&s.plan),
                phase = phase_name(s.phase),
                phase_ends = escape(&phase_ends),
                status = escape(s.subscription.status.code()),
                period = s
                    .period_end
                    .map(|e| format!(
                        "<tr><th>Current period ends</th><td>{}</td></tr>",
                        escape(&date(e))
                    ))
                    .unwrap_or_default(),
            )
        }
    };
    let preview = match &view.preview {
        None => String::new(),
        Some(p) => format!(
            "<h2>Next invoice</h2>\n<p id=\"preview\">{} so far for {} <span class=\"muted\">(the period is not over yet)</span></p>\n",
            escape(&format!("{} {}", plain_amount(p.total), p.currency)),
            escape(&span(p.period_start, p.period_end)),
        ),
    };
    let invoices = if view.invoices.is_empty() {
        "<p class=\"note\">No invoices yet.</p>".to_owned()
    } else {
        let rows: String = view
            .invoices
            .iter()
            .map(|i| {
                format!(
                    "<tr><td>{number}</td><td>{period}</td><td>{status}</td>\
                     <td class=\"num\">{total}</td>\
                     <td><a href=\"{hosted}\">View</a> · <a href=\"{pdf}\">PDF</a></td></tr>\n",
                    number = escape(i.number.as_deref().unwrap_or("—")),
                    period = escape(&span(i.invoice.period_start, i.invoice.period_end)),
                    status = escape(i.invoice.status.code()),
                    total = escape(&format!(
                        "{} {}",
                        plain_amount(i.invoice.total),
                        i.invoice.currency
                    )),
                    hosted = escape(&i.hosted_url),
                    pdf = escape(&i.pdf_url),
                )
            })
            .collect();
        format!(
            "<table id=\"invoices\"><thead><tr><th>Number</th><th>Period</th><th>Status</th>\
             <th class=\"num\">Total</th><th>Documents</th></tr></thead><tbody>\n{rows}</tbody></table>"
        )
    };
    let payment = match &view.provider {
        None => "<p class=\"note\">No payment method on file.</p>".to_owned(),
        Some(p) => format!(
            "<p id=\"payment-method\">Your card is kept by our payment provider ({}); it never reaches us. \
             <a href=\"{}\">Update payment method</a></p>",
            escape(p),
            escape(&format!("{customer_id}/payment-method?{query}")),
        ),
    };
    let body = format!(
        "<h1>Billing for {customer}</h1>\n<p class=\"note\">{email}</p>\n{notice}\
         <h2>Subscription</h2>\n{subscription}\n{preview}\
         <h2>Invoices</h2>\n{invoices}\n<h2>Payment method</h2>\n{payment}\n\
         <p class=\"links\"><a id=\"return\" href=\"{ret}\">Back to {merchant}</a></p>",
        customer = escape(&view.customer_name),
        email = escape(&view.customer_email),
        ret = escape(&view.return_url),
        merchant = escape(&view.merchant),
    );
    page(
        &format!("Billing · {}", view.merchant),
        &view.merchant,
        &body,
    )
}
