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
