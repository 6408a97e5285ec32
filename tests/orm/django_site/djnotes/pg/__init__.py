"""Models of field types only PostgreSQL has (JSON documents, arrays), used by test_django_postgres.py."""
