"""National adapters: each national SPE's records to the common schema (spehub.v1) and back.

Depends only on the generated schema and the standard library (checked by
tests/test_architecture.py). Adapters are found by name in the entry-point
group ``spehub.adapters``, so a third party can add one from its own package.
"""
