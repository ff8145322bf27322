"""The `systemconfig.json` model and its loader."""
