"""The operators' console: one module per page, mounted at /console."""
