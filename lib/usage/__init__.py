"""Usage log (a SQLite file, or PostgreSQL via DATABASE_URL), credit model and the queries behind the Usage page.

Import from the modules: `store` (the log), `credits` (credit models and pricing), `queries` (the Usage page's
aggregations), `charts`, `schema`, `db` (the two backends), `copy` (SQLite into PostgreSQL).
"""
