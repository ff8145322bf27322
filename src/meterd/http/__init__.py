"""The HTTP layer: thin Starlette handlers over the domain and the store."""
