from typing import Annotated, Any

from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Lower

import purposeguard as pg


class Ledger(models.Model):
    """An account's billing ledger: a JSON document, an array of tags, and
    values the database makes on INSERT (a default and a generated column)."""

    __purposeguard_tenant__ = "account"

    account = models.CharField(max_length=40, unique=True)
    entries: Annotated[dict[str, Any], pg.Category("customer_data")] = models.JSONField(default=dict)
    tags: Annotated[list[str], pg.Category("customer_data")] = ArrayField(
        models.CharField(max_length=40), default=list
    )
    stamp: Annotated[str, pg.Category("customer_data")] = models.TextField(db_default="server-side secret")
    low: Annotated[str, pg.Category("customer_data")] = models.GeneratedField(
        expression=Lower("account"), output_field=models.TextField(), db_persist=True
    )
    note = models.TextField(default="")
