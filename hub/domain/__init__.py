"""Domain rules: participants and keys, signatures, record validation, visibility.

Depends only on the generated schema and the standard library/cryptography.
"""
