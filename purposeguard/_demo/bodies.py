"""Request bodies: validated by pydantic, so what a request carries is labelled on arrival.

Each personal field is declared once, here, with the same ``Category``
annotation the store's models use (literal keys: the static scan of
``purposeguard report`` reads them).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, Field, StrictBool, StrictInt

import purposeguard as pg

GIB = 1024**3

Text = Annotated[str, Field(min_length=1)]


class NewUser(BaseModel):
    address: Annotated[str, pg.Category("customer_data"), Field(min_length=1)]
    name: Annotated[str, pg.Category("customer_data"), Field(min_length=1)]
    quota: StrictInt = Field(default=50 * GIB, gt=0)


class NewAdministrator(BaseModel):
    address: Annotated[str, pg.Category("administrator_data"), Field(min_length=1)]


class Mail(BaseModel):
    sender: Annotated[str, pg.Category("customer_data"), Field(min_length=1)]
    subject: Annotated[str, pg.Category("customer_data.content.email"), Field(min_length=1)]
    body: Annotated[str, pg.Category("customer_data.content.email"), Field(min_length=1)]


class NewDocument(BaseModel):
    owner: Annotated[str, pg.Category("customer_data"), Field(min_length=1)]
    body: Annotated[str, pg.Category("customer_data.content.document"), Field(min_length=1)]


class Newsletter(BaseModel):
    subject: Text


class Grant(BaseModel):
    purpose: Text
    categories: list[str] = Field(default_factory=lambda: ["customer_data"])
    granted_by: Text


class Revocation(BaseModel):
    purpose: Text
    revoked_by: Text


class Disclosure(BaseModel):
    """A law-enforcement request: the mailbox it names and the fields it asks for."""

    mailbox: Text
    fields: list[str] = Field(min_length=1)
    requester: str | None = None


class CompelledDisclosure(Disclosure):
    case: Text
    authority: Text
    redirect_attempted: StrictBool = False
