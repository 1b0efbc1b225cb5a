"""HTTP plumbing both APIs share: reading and writing bodies, limits, the protocol's bounds,
error responses, metrics and the OpenAPI document."""
