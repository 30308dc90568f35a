"""Rule schemas: the pydantic models of the YAML policy files an organisation may override."""
