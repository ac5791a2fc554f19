"""Alembic environment: migrations always run on a connection handed over by ``storage.database``."""

from alembic import context

from storage.tables import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through storage.database.migrate(), which passes a connection")

# render_as_batch: SQLite cannot ALTER most things, so later migrations must copy tables.
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
