"""Services: the only code that opens a unit of work. Flows and the CLI call these."""
