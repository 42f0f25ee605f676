"""Step 5: forwarding. ``headers`` (pure trust-boundary rules), ``proxy`` (the only upstream I/O).

Nothing is re-exported here so that importing one submodule never pulls in the others' I/O
libraries; import from ``gateway.forward.headers`` / ``gateway.forward.proxy`` directly.
"""
