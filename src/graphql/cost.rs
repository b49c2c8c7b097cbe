//! What a document costs, computed without expanding it: each fragment's cost is worked out
//! once and reused wherever it is spread, so a document whose fragments spread each other
//! twice per level (2^n selections from n lines) is measured in time linear in its text and
//! refused before anything else walks it.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextPrepareRequest, NextValidation,
};
use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Selection, SelectionSet,
};
use async_graphql::parser::{self, parse_query};
use async_graphql::{ErrorExtensions, Pos, Request, ServerError, ServerResult, ValidationResult};

use super::variables;

use crate::billing::BillingError;

/// Query limits: deep nesting, alias floods and fragment fan-out are refused before
/// execution.
pub const MAX_DEPTH: u64 = 12;
/// Fields after expansion (each field costs 1), over all operations of a document.
pub const MAX_COMPLEXITY: u64 = 500;
/// Selections after expansion (fields, spreads and inline fragments), over all operations,
/// and within any one fragment.
pub const MAX_SELECTIONS: u64 = 2_000;
/// Documents longer than this are parsed on a blocking thread, off the request workers.
const BLOCKING_PARSE_BYTES: usize = 16 * 1024;

/// The expanded size of a selection set, or of a whole document.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Cost {
    /// Field selections (the complexity).
    pub fields: u64,
    /// Every selection: fields, fragment spreads, inline fragments.
    pub selections: u64,
    /// The deepest nesting of fields.
    pub depth: u64,
}

impl Cost {
    fn then(self, other: Cost) -> Cost {
        Cost {
            fields: self.fields.saturating_add(other.fields),
            selections: self.selections.saturating_add(other.selections),
            depth: self.depth.max(other.depth),
        }
    }
}

/// Why a document was refused before it ran.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    TooDeep(u64),
    TooComplex(u64),
    TooManySelections(u64),
    FragmentCycle(String),
}

impl From<Refusal> for BillingError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::TooDeep(d) => BillingError::QueryTooDeep(format!(
                "the query is nested {d} fields deep; at most {MAX_DEPTH} are allowed"
            )),
            Refusal::TooComplex(c) => BillingError::QueryTooComplex(format!(
                "the query selects {c} fields after expanding fragments; at most {MAX_COMPLEXITY} are allowed"
            )),
            Refusal::TooManySelections(s) => BillingError::QueryTooComplex(format!(
                "the query has {s} selections after expanding fragments; at most {MAX_SELECTIONS} are allowed"
            )),
            Refusal::FragmentCycle(name) => {
                BillingError::invalid(format!("fragment {name:?} spreads itself"))
            }
        }
    }
}

/// The expanded cost of every operation in `doc`, added up, with each fragment measured
/// once. Unknown fragments count nothing (validation reports them).
pub fn document_cost(doc: &ExecutableDocument) -> Result<Cost, Refusal> {
    measure(doc).map(|(cost, _)| cost)
}

/// The document's cost and the most selections any one fragment expands to.
fn measure(doc: &ExecutableDocument) -> Result<(Cost, u64), Refusal> {
    let fragments = fragment_costs(doc)?;
    let largest = fragments.values().map(|c| c.selections).max().unwrap_or(0);
    let mut total = Cost::default();
    for (_, op) in doc.operations.iter() {
        total = total.then(set_cost(&op.node.selection_set.node, &fragments));
    }
    Ok((total, largest))
}

/// Refuses a document over the limits.
pub fn check(doc: &ExecutableDocument) -> Result<Cost, Refusal> {
    let (cost, largest_fragment) = measure(doc)?;
    // Fragment definitions are validated on their own, expanded: keep them small too.
    if largest_fragment > MAX_SELECTIONS {
        return Err(Refusal::TooManySelections(largest_fragment));
    }
    if cost.depth > MAX_DEPTH {
        return Err(Refusal::TooDeep(cost.depth));
    }
    if cost.selections > MAX_SELECTIONS {
        return Err(Refusal::TooManySelections(cost.selections));
    }
    if cost.fields > MAX_COMPLEXITY {
        return Err(Refusal::TooComplex(cost.fields));
    }
    Ok(cost)
}

/// Parses and checks a document; parse errors keep their position.
pub fn parse_and_check(query: &str) -> Result<ExecutableDocument, (BillingError, Option<Pos>)> {
    let doc = parse_query(query).map_err(|e| {
        let pos = e.positions().next();
        let err = match e {
            parser::Error::RecursionLimitExceeded => {
                BillingError::QueryTooDeep("the query is nested too deep".to_owned())
            }
            other => BillingError::invalid(other.to_string()),
        };
        (err, pos)
    })?;
    check(&doc).map_err(|r| (r.into(), None))?;
    Ok(doc)
}

/// The cost of a selection set given the costs of the fragments it may spread.
fn set_cost(set: &SelectionSet, fragments: &HashMap<&str, Cost>) -> Cost {
    let mut total = Cost::default();
    for item in &set.items {
        let cost = match &item.node {
            Selection::Field(f) => {
                let inner = set_cost(&f.node.selection_set.node, fragments);
                Cost {
                    fields: inner.fields.saturating_add(1),
                    selections: inner.selections.saturating_add(1),
                    depth: inner.depth + 1,
                }
            }
            Selection::FragmentSpread(s) => {
                let inner = fragments
                    .get(s.node.fragment_name.node.as_str())
                    .copied()
                    .unwrap_or_default();
                Cost {
                    selections: inner.selections.saturating_add(1),
                    ..inner
                }
            }
            Selection::InlineFragment(i) => {
                let inner = set_cost(&i.node.selection_set.node, fragments);
                Cost {
                    selections: inner.selections.saturating_add(1),
                    ..inner
                }
            }
        };
        total = total.then(cost);
    }
    total
}

/// The fragments a selection set spreads directly (at any nesting of fields within it).
fn spreads<'a>(set: &'a SelectionSet, out: &mut Vec<&'a str>) {
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => spreads(&f.node.selection_set.node, out),
            Selection::FragmentSpread(s) => out.push(s.node.fragment_name.node.as_str()),
            Selection::InlineFragment(i) => spreads(&i.node.selection_set.node, out),
        }
    }
}

/// Every fragment's expanded cost, each computed once after the fragments it spreads.
/// The walk keeps its own stack: a long chain of fragments cannot exhaust the thread's.
fn fragment_costs(doc: &ExecutableDocument) -> Result<HashMap<&str, Cost>, Refusal> {
    /// (fragment, the fragments it spreads, how many of those are done)
    type Frame<'a> = (&'a str, Vec<&'a str>, usize);
    fn open<'a>(doc: &'a ExecutableDocument, name: &str, stack: &mut Vec<Frame<'a>>) {
        if let Some((name, def)) = doc.fragments.get_key_value(name) {
            let mut deps = Vec::new();
            spreads(&def.node.selection_set.node, &mut deps);
            stack.push((name.as_str(), deps, 0));
        }
    }
    // Open: on the stack now; Done: its cost is known.
    let mut done: HashMap<&str, bool> = HashMap::with_capacity(doc.fragments.len());
    let mut costs: HashMap<&str, Cost> = HashMap::with_capacity(doc.fragments.len());
    for root in doc.fragments.keys() {
        if done.contains_key(root.as_str()) {
            continue;
        }
        let mut stack = Vec::new();
        open(doc, root.as_str(), &mut stack);
        done.insert(root.as_str(), false);
        while let Some((name, deps, next)) = stack.last_mut() {
            if let Some(dep) = deps.get(*next).copied() {
                *next += 1;
                match done.get(dep) {
                    Some(true) => {}
                    Some(false) => return Err(Refusal::FragmentCycle(dep.to_owned())),
                    None if doc.fragments.contains_key(dep) => {
                        done.insert(dep, false);
                        open(doc, dep, &mut stack);
                    }
                    None => {}
                }
                continue;
            }
            let name = *name;
            if let Some(def) = doc.fragments.get(name) {
                let cost = set_cost(&def.node.selection_set.node, &costs);
                costs.insert(name, cost);
            }
            done.insert(name, true);
            stack.pop();
        }
    }
    Ok(costs)
}

/// The query limits as a schema extension, over HTTP and websockets alike: parses each
/// document once, measures it and
/// hands the parsed document on. Documents that passed are kept by their text
/// ([`CheckedDocuments`]), so a client that sends the same few queries again and again is
/// not parsed and measured again.
#[derive(Default)]
pub struct CostLimits {
    // Stateless per request: every request shares this one extension.
    shared: Arc<Checker>,
}

#[derive(Default)]
struct Checker {
    documents: CheckedDocuments,
}

impl ExtensionFactory for CostLimits {
    fn create(&self) -> Arc<dyn Extension> {
        self.shared.clone()
    }
}

/// Documents up to this long are kept once they passed the limits.
const CACHED_QUERY_BYTES: usize = 4 * 1024;
/// Distinct documents kept; when full, the cache starts over.
const CACHED_DOCUMENTS: usize = 256;

/// Parsed documents within the limits, by their text. A document is the same whatever its
/// variables, and whether it passes the limits depends on its text alone, so an entry stands
/// for as long as it is kept. Refused and unparsable documents are not kept.
#[derive(Default)]
pub struct CheckedDocuments {
    docs: RwLock<HashMap<Box<str>, Arc<Kept>>>,
}

/// A kept document and, once one request with it passed the library's validation, that
/// validation's result: every rule but the one on variables' values depends on the text
/// and the schema alone, so later requests with this text have only their variables
/// checked ([`super::variables`]).
struct Kept {
    doc: ExecutableDocument,
    validated: OnceLock<ValidationResult>,
}

impl CheckedDocuments {
    /// [`parse_and_check`], from the cache when this text passed before.
    pub fn parse_and_check(
        &self,
        query: &str,
    ) -> Result<ExecutableDocument, (BillingError, Option<Pos>)> {
        self.kept(query).map(|(doc, _)| doc)
    }

    /// The document, and its entry when it is kept.
    fn kept(&self, query: &str) -> Result<(ExecutableDocument, Option<Arc<Kept>>), Refused> {
        if query.len() > CACHED_QUERY_BYTES {
            return parse_and_check(query).map(|doc| (doc, None));
        }
        if let Some(kept) = self
            .docs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(query)
        {
            return Ok((kept.doc.clone(), Some(kept.clone())));
        }
        let doc = parse_and_check(query)?;
        let kept = Arc::new(Kept {
            doc: doc.clone(),
            validated: OnceLock::new(),
        });
        let mut docs = self.docs.write().unwrap_or_else(|p| p.into_inner());
        if docs.len() >= CACHED_DOCUMENTS {
            docs.clear();
        }
        docs.insert(query.into(), kept.clone());
        Ok((doc, Some(kept)))
    }

    /// Documents kept.
    pub fn len(&self) -> usize {
        self.docs.read().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a document was not parsed or not within the limits, and where.
type Refused = (BillingError, Option<Pos>);

/// In a request's data: the kept document's validation stands, its variables fit.
struct Validated(ValidationResult);

/// In a request's data: the kept entry that this request's validation result completes.
struct ToValidate(Arc<Kept>);

#[async_trait::async_trait]
impl Extension for Checker {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        // No text the API stores may hold a NUL (PostgreSQL cannot), whichever field.
        if request.query.contains('\0')
            || request.query.contains("\\u0000")
            || request.variables.values().any(holds_nul)
        {
            let e = BillingError::invalid("input must not contain NUL characters");
            return Err(e.extend().into_server_error(Pos::default()));
        }
        let checked = if request.query.len() > BLOCKING_PARSE_BYTES {
            let query = request.query.clone();
            tokio::task::spawn_blocking(move || parse_and_check(&query))
                .await
                .unwrap_or_else(|_| {
                    Err((BillingError::invalid("the query could not be parsed"), None))
                })
                .map(|doc| (doc, None))
        } else {
            self.documents.kept(&request.query)
        };
        let (doc, kept) = match checked {
            Ok(found) => found,
            Err((e, pos)) => return Err(e.extend().into_server_error(pos.unwrap_or_default())),
        };
        // Only a document of one operation: which operation runs does not change what its
        // validation found.
        if let (Some(kept), DocumentOperations::Single(operation)) = (kept, &doc.operations) {
            match kept.validated.get() {
                Some(result) => {
                    let registry = &ctx.schema_env.registry;
                    variables::check(registry, &operation.node, &request.variables)?;
                    request.data.insert(Validated(*result));
                }
                None => request.data.insert(ToValidate(kept)),
            }
        }
        request.set_parsed_query(doc);
        next.run(ctx, request).await
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        if let Some(Validated(result)) = ctx.data_opt::<Validated>() {
            return Ok(*result);
        }
        let result = next.run(ctx).await?;
        if let Some(ToValidate(kept)) = ctx.data_opt::<ToValidate>() {
            let _ = kept.validated.set(result);
        }
        Ok(result)
    }
}

fn holds_nul(v: &async_graphql::Value) -> bool {
    use async_graphql::Value;
    match v {
        Value::String(s) => s.contains('\0'),
        Value::List(items) => items.iter().any(holds_nul),
        Value::Object(fields) => fields.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::time::{Duration, Instant};

    /// The cost by expanding every spread: exponential, for checking on small graphs.
    fn naive(set: &SelectionSet, doc: &ExecutableDocument) -> Cost {
        let mut total = Cost::default();
        for item in &set.items {
            let cost = match &item.node {
                Selection::Field(f) => {
                    let inner = naive(&f.node.selection_set.node, doc);
                    Cost {
                        fields: inner.fields + 1,
                        selections: inner.selections + 1,
                        depth: inner.depth + 1,
                    }
                }
                Selection::FragmentSpread(s) => {
                    let inner = doc
                        .fragments
                        .get(s.node.fragment_name.node.as_str())
                        .map(|f| naive(&f.node.selection_set.node, doc))
                        .unwrap_or_default();
                    Cost {
                        selections: inner.selections + 1,
                        ..inner
                    }
                }
                Selection::InlineFragment(i) => {
                    let inner = naive(&i.node.selection_set.node, doc);
                    Cost {
                        selections: inner.selections + 1,
                        ..inner
                    }
                }
            };
            total = total.then(cost);
        }
        total
    }

    fn naive_document(doc: &ExecutableDocument) -> Cost {
        doc.operations.iter().fold(Cost::default(), |t, (_, op)| {
            t.then(naive(&op.node.selection_set.node, doc))
        })
    }

    /// One item of a generated selection set.
    #[derive(Clone, Debug)]
    enum Item {
        Leaf,
        /// A field with a nested set.
        Nested(Vec<Item>),
        Inline(Vec<Item>),
        /// A spread of a fragment, as an index among those defined before it.
        Spread(usize),
    }

    fn items() -> impl Strategy<Value = Vec<Item>> {
        let leaf = prop_oneof![Just(Item::Leaf), (0usize..8).prop_map(Item::Spread)];
        let item = leaf.prop_recursive(3, 12, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 1..4).prop_map(Item::Nested),
                prop::collection::vec(inner, 1..4).prop_map(Item::Inline),
            ]
        });
        prop::collection::vec(item, 1..5)
    }

    fn render(items: &[Item], spreadable: usize, out: &mut String) {
        for item in items {
            match item {
                Item::Leaf => out.push_str("id "),
                Item::Nested(inner) => {
                    out.push_str("f { ");
                    render(inner, spreadable, out);
                    out.push_str("} ");
                }
                Item::Inline(inner) => {
                    out.push_str("... on T { ");
                    render(inner, spreadable, out);
                    out.push_str("} ");
                }
                // Only fragments defined earlier: the graph has no cycles.
                Item::Spread(i) if spreadable > 0 => {
                    out.push_str(&format!("...F{} ", i % spreadable));
                }
                Item::Spread(_) => out.push_str("id "),
            }
        }
    }

    /// A document of fragments F0..Fn, each spreading earlier ones, and one operation.
    fn document(fragments: &[Vec<Item>], op: &[Item]) -> String {
        let mut text = String::from("{ ");
        render(op, fragments.len(), &mut text);
        text.push_str("}\n");
        for (i, body) in fragments.iter().enumerate() {
            text.push_str(&format!("fragment F{i} on T {{ "));
            render(body, i, &mut text);
            text.push_str("}\n");
        }
        text
    }

    /// The fan-out: each fragment spreads the previous one twice.
    fn fan_out(levels: usize) -> String {
        let mut text =
            format!("{{ products {{ ...F{levels} }} }}\nfragment F0 on Product {{ id name }}\n");
        for i in 1..=levels {
            text.push_str(&format!(
                "fragment F{i} on Product {{ ...F{p} ...F{p} }}\n",
                p = i - 1
            ));
        }
        text
    }

    proptest! {
        #[test]
        fn memoized_cost_is_the_expanded_cost(
            fragments in prop::collection::vec(items(), 0..6),
            op in items(),
        ) {
            let text = document(&fragments, &op);
            let doc = parse_query(&text).expect("generated documents parse");
            prop_assert_eq!(document_cost(&doc).expect("acyclic"), naive_document(&doc), "{}", text);
        }

        #[test]
        fn deep_fan_out_is_refused_fast(levels in 12usize..400, width in 2usize..6) {
            let mut text = format!("{{ products {{ ...F{levels} }} }}\nfragment F0 on Product {{ id }}\n");
            for i in 1..=levels {
                let spread = format!("...F{} ", i - 1);
                text.push_str(&format!("fragment F{i} on Product {{ {} }}\n", spread.repeat(width)));
            }
            let doc = parse_query(&text).expect("parses");
            let started = Instant::now();
            let refused = check(&doc);
            let took = started.elapsed();
            prop_assert!(refused.is_err());
            prop_assert!(took < Duration::from_millis(50), "{levels}×{width} took {took:?}");
        }
    }

    #[test]
    fn the_reported_fan_out_is_refused_as_too_complex() {
        let doc = parse_query(fan_out(27)).unwrap();
        // 2^28 fields under `products`, measured without expanding anything.
        assert_eq!(document_cost(&doc).unwrap().fields, 1 + (1 << 28));
        assert!(matches!(check(&doc), Err(Refusal::TooManySelections(_))));
    }

    #[test]
    fn cycles_and_long_chains_are_handled() {
        let cyclic =
            parse_query("{ a { ...A } } fragment A on T { ...B } fragment B on T { ...A }")
                .unwrap();
        assert!(matches!(
            document_cost(&cyclic),
            Err(Refusal::FragmentCycle(_))
        ));
        // A chain of 50,000 fragments: no stack overflow, one selection each.
        let mut text = String::from("{ a { ...F50000 } }\nfragment F0 on T { id }\n");
        for i in 1..=50_000 {
            text.push_str(&format!("fragment F{i} on T {{ ...F{} }}\n", i - 1));
        }
        let doc = parse_query(&text).unwrap();
        assert_eq!(check(&doc), Err(Refusal::TooManySelections(50_001)));
    }

    #[test]
    fn ordinary_queries_pass() {
        let doc =
            parse_query("{ plans { id phases { kind prices { unitAmount } } } viewer { role } }")
                .unwrap();
        assert_eq!(
            check(&doc),
            Ok(Cost {
                fields: 8,
                selections: 8,
                depth: 4
            })
        );
    }

    #[test]
    fn checked_documents_are_kept_by_text_and_refusals_are_not() {
        let cache = CheckedDocuments::default();
        let query = "query Q($id: ID!) { customer(id: $id) { id name } }";
        let first = cache.parse_and_check(query).unwrap();
        assert_eq!(cache.len(), 1);
        let again = cache.parse_and_check(query).unwrap();
        assert_eq!(cache.len(), 1);
        // The kept document is the parser's, as it would parse the text now.
        let fresh = parse_query(query).unwrap();
        assert_eq!(format!("{again:?}"), format!("{fresh:?}"));
        assert_eq!(format!("{first:?}"), format!("{fresh:?}"));
        // Too deep, unparsable: refused each time, and never kept.
        let deep = format!("{}{}", "{ a ".repeat(20), "}".repeat(20));
        for _ in 0..2 {
            let (e, _) = cache.parse_and_check(&deep).unwrap_err();
            assert!(matches!(e, BillingError::QueryTooDeep(_)));
            assert!(cache.parse_and_check("{ a ").is_err());
        }
        assert_eq!(cache.len(), 1);
        // Bounded: past the limit it starts over.
        for i in 0..CACHED_DOCUMENTS + 10 {
            cache.parse_and_check(&format!("{{ f{i} }}")).unwrap();
        }
        let kept = cache.len();
        assert!(kept <= CACHED_DOCUMENTS);
        // Long documents are parsed each time, not kept.
        let long = format!("{{ a(x: \"{}\") }}", "x".repeat(CACHED_QUERY_BYTES));
        assert!(cache.parse_and_check(&long).is_ok());
        assert_eq!(cache.len(), kept);
    }
}
