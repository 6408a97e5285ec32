"""Labels survive pickling on objects, also across a process pool."""

from __future__ import annotations

import argparse
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


# Made by purposeguard before the labels layer was split into modules (it all
# lived in purposeguard._labels): pickle.dumps(values, protocol=4) of
# label("hello", EMAIL), label("hers", EMAIL, "payment_data", tenant="contoso"),
# label(b"raw", EMAIL), the same with tenant="contoso", label(7, EMAIL),
# label(2.5, EMAIL, tenant="contoso"), label({"k": "v"}, EMAIL),
# label(["a", 1], EMAIL, tenant="contoso"), label(("t",), EMAIL),
# label({"s"}, EMAIL), label(frozenset({"f"}), EMAIL),
# label(1j, EMAIL, tenant="contoso") and
# label(argparse.Namespace(owner="a"), EMAIL, tenant="contoso").
OLD_LAYOUT_PICKLE = (
    b"\x80\x04\x95\xc6\x01\x00\x00\x00\x00\x00\x00]\x94(\x8c\x14purposeguard._labels\x94\x8c\x08_rebui"
    b"ld\x94\x93\x94\x8c\x05hello\x94\x8c\x1bcustomer_data.content.email\x94\x85\x94N\x87\x94R\x94h"
    b"\x03\x8c\x04hers\x94h\x05\x8c\x0cpayment_data\x94\x86\x94\x8c\x07contoso\x94\x87\x94R\x94h\x03C"
    b"\x03raw\x94h\x05\x85\x94N\x87\x94R\x94h\x03C\x03raw\x94h\x05\x85\x94h\x0c\x87\x94R\x94h\x03K\x07"
    b"h\x05\x85\x94N\x87\x94R\x94h\x03G@\x04\x00\x00\x00\x00\x00\x00h\x05\x85\x94h\x0c\x87\x94R\x94h"
    b"\x03}\x94\x8c\x01k\x94\x8c\x01v\x94sh\x05\x85\x94N\x87\x94R\x94h\x03]\x94(\x8c\x01a\x94K\x01eh"
    b"\x05\x85\x94h\x0c\x87\x94R\x94h\x03\x8c\x01t\x94\x85\x94h\x05\x85\x94N\x87\x94R\x94h\x03\x8f\x94"
    b"(\x8c\x01s\x94\x90h\x05\x85\x94N\x87\x94R\x94h\x03(\x8c\x01f\x94\x91\x94h\x05\x85\x94N\x87\x94R"
    b"\x94h\x03\x8c\x08builtins\x94\x8c\x07complex\x94\x93\x94G\x00\x00\x00\x00\x00\x00\x00\x00G?\xf0"
    b"\x00\x00\x00\x00\x00\x00\x86\x94R\x94h\x05\x85\x94h\x0c\x87\x94R\x94h\x01\x8c\x0f_rebuild_object"
    b"\x94\x93\x94(\x8c\x07copyreg\x94\x8c\n__newobj__\x94\x93\x94\x8c\x08argparse\x94\x8c\tNamespace"
    b"\x94\x93\x94\x85\x94}\x94\x8c\x05owner\x94h$sNNt\x94h\x05\x85\x94h\x0c\x87\x94R\x94e."
)


def test_values_pickled_before_the_labels_layer_was_split_unpickle_with_their_labels() -> None:
    """Stored pickles name purposeguard._labels._rebuild and _rebuild_object: they still load."""
    values = pickle.loads(OLD_LAYOUT_PICKLE)
    expected = [
        ("hello", str, {EMAIL}, None),
        ("hers", str, {EMAIL, "payment_data"}, "contoso"),
        (b"raw", bytes, {EMAIL}, None),
        (b"raw", bytes, {EMAIL}, "contoso"),
        (7, int, {EMAIL}, None),
        (2.5, float, {EMAIL}, "contoso"),
        ({"k": "v"}, dict, {EMAIL}, None),
        (["a", 1], list, {EMAIL}, "contoso"),
        (("t",), tuple, {EMAIL}, None),
        ({"s"}, set, {EMAIL}, None),
        (frozenset({"f"}), frozenset, {EMAIL}, None),
        (1j, complex, {EMAIL}, "contoso"),
    ]
    for value, (plain, base, labels, tenant) in zip(values[:-1], expected, strict=True):
        assert value == plain and isinstance(value, base)
        assert pg.labels_of(value) == labels
        assert pg.tenant_of(value) == tenant
    namespace = values[-1]
    assert type(namespace) is argparse.Namespace and namespace.owner == "a"
    assert pg.labels_of(namespace) == {EMAIL}
    assert pg.tenant_of(namespace) == "contoso"


def test_values_pickled_now_name_the_same_rebuild_functions() -> None:
    """So what is pickled now also loads where purposeguard is older (a worker not yet upgraded)."""
    values = [pg.label("hello", EMAIL, tenant="contoso"), pg.label(Note("plain"), EMAIL)]
    payload = pickle.dumps(values, protocol=4)
    assert b"purposeguard._labels" in payload
    assert b"purposeguard._labelled" not in payload
    assert pg.labels_of(pickle.loads(payload)) == {EMAIL}
