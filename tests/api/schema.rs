/// `schema.graphql` is the SDL the code produces; drift fails here (it is never rewritten
/// by a test: run `cargo run -- schema > schema.graphql`).
#[test]
fn schema_graphql_is_current() {
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql"))
        .expect("schema.graphql at the repository root");
    let generated = billing::graphql::sdl();
    assert!(
        committed == generated,
        "schema.graphql is stale: run `cargo run -- schema > schema.graphql`"
    );
}
