// Starts GraphiQL on this server's own endpoints (this file is the project's own).
// The editors start from the address's ?query=, ?variables= and ?headers= when given,
// so a link can carry a query and an `{"Authorization": "Bearer <token>"}` header.
(function () {
  var params = new URLSearchParams(window.location.search);
  var http = new URL("/graphql", window.location.href);
  var ws = new URL("/graphql/ws", window.location.href);
  ws.protocol = ws.protocol === "https:" ? "wss:" : "ws:";
  var props = {
    fetcher: GraphiQL.createFetcher({
      url: http.toString(),
      subscriptionUrl: ws.toString(),
    }),
    isHeadersEditorEnabled: true,
    shouldPersistHeaders: false,
    defaultEditorToolsVisibility: "headers",
  };
  ["query", "variables", "headers"].forEach(function (name) {
    if (params.has(name)) {
      props[name] = params.get(name);
    }
  });
  ReactDOM.createRoot(document.getElementById("graphiql")).render(
    React.createElement(GraphiQL, props)
  );
})();
