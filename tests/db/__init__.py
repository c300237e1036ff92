"""The database plumbing (storywink/db, storywink/migrations): migrations, creating a database."""
