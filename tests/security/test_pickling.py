"""Labels survive pickling on objects, also across a process pool."""

from __future__ import annotations

import concurrent.futures
import copy
import pickle

import pytest

import purposeguard as pg

EMAIL = "customer_data.content.email"


class Note:
    def __init__(self, body: str) -> None:
        self.body = body


def test_a_pickled_labelled_object_keeps_its_labels() -> None:
    """pickle.loads(pickle.dumps(labelled object)) carries the same labels and tenant."""
    note = pg.label(Note("plain"), EMAIL, tenant="contoso")
    back = pickle.loads(pickle.dumps(note))
    assert back is not note and back.body == "plain"
    assert pg.labels_of(back) == {EMAIL}
    assert pg.tenant_of(back) == "contoso"


def test_an_unlabelled_instance_of_the_same_class_stays_unlabelled() -> None:
    """Only labelled instances gain labels after a round trip."""
    pg.label(Note("x"), EMAIL)
    assert pg.labels_of(pickle.loads(pickle.dumps(Note("plain")))) == frozenset()


def test_a_copied_labelled_object_keeps_its_labels() -> None:
    """copy.copy uses the same reduction and keeps the labels."""
    assert pg.labels_of(copy.copy(pg.label(Note("plain"), EMAIL))) == {EMAIL}


def test_a_process_pool_refuses_advertising_on_a_labelled_object() -> None:
    """wrap_executor(ProcessPoolExecutor()) runs the guarded function on the unpickled, still labelled object."""
    pg.configure("trust-center", mode="enforce")
    with pg.wrap_executor(concurrent.futures.ProcessPoolExecutor(1)) as pool:
        # The worker checks pg.check's own labels; pg.check is importable by any start method.
        future = pool.submit(pg.check, pg.label(Note("plain"), EMAIL), "advertising")
        with pytest.raises(pg.PurposeViolation):
            future.result()
