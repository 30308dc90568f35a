"""Local stand-ins for outside services (Slack's Web API, ...): tests reach only 127.0.0.1."""
