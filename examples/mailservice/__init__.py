"""An example multi-tenant mail service guarded by purposeguard."""
