"""The decision service (FORWARD_AUTH.md): the engine as the authorizer an edge proxy calls."""
