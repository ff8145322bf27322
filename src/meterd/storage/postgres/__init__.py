"""The PostgreSQL backend: several stateless meterd processes on one database."""
