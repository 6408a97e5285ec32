from typing import Annotated

from django.contrib.auth.models import User
from django.db import models

import purposeguard as pg


class Note(models.Model):
    __purposeguard_tenant__ = "owner"

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="notes")
    title = models.CharField(max_length=200)
    body: Annotated[str, pg.Category("customer_data.content.document")] = models.TextField()

    class Meta:
        app_label = "djnotes"


class Profile(models.Model):
    __purposeguard_tenant__ = "user"

    user = models.OneToOneField(User, on_delete=models.CASCADE, related_name="profile")
    email: Annotated[str, pg.Category("customer_data")] = models.CharField(max_length=200)

    class Meta:
        app_label = "djnotes"
