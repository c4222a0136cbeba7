"""The HTTP contract: routes, wire models (protocol), middleware, the call context read from each
request's headers, and the handlers that give every error one body shape."""
