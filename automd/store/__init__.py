"""All SQLite: one serialised writer, numbered migrations, and the tables behind the API."""
