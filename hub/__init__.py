"""SPE Hub: the interoperability hub between national public employment services.

Layers (dependencies point inward, checked by tests/test_architecture.py):
``api`` (gRPC servicers, interceptors, server) → ``services`` → ``store`` / ``domain``
→ the generated schema ``spehub.v1``. Only ``hub.api`` imports grpc; only
``hub.store`` imports SQLAlchemy. ``hub.bootstrap`` is the one composition root.
"""
