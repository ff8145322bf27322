"""The end customer's portal, mounted at /portal/{token}."""
