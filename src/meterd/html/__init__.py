"""The console (/console, for operators) and the customer portal (/portal/{token}).

Server-rendered HTML: page modules parse input, call the same services as the API,
build one typed context per page (a msgspec Struct) and render a Jinja2 template.
No script runs in these pages; every asset ships in this package.
"""
