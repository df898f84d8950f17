"""Fake CRM servers: real HTTP on 127.0.0.1 that behaves like the vendors' APIs.

Used by the tests and by `crm-roi demo --live`. Each fake keeps a seeded,
mutable store of records and can inject the faults real APIs produce.
"""
