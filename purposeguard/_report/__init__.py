"""The data-use report, in four parts (the public entry is :mod:`purposeguard.report`).

- ``model``: frozen dataclasses, one per section of the report;
- ``build``: reading the audit log and small aggregation functions that fill the model;
- ``html`` and ``markdown``: one renderer per section, each format with an
  escaping type no string can bypass (text becomes markup only by being escaped).
"""
