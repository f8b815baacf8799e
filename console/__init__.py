"""The operators' console under ``/ops``: views, their queries, templates and static files."""
