from django.apps import AppConfig


class LedgerConfig(AppConfig):
    name = "djnotes.pg"
    # "pg" alone would read as purposeguard's usual alias in the tests.
    label = "djnotes_pg"
