"""The suite uses the package's own fixtures (exportsathi_db.testing), as a downstream app would."""

pytest_plugins = ["exportsathi_db.testing"]
