"""A small Django notes app, declared once per field, used by the Django integration tests."""
