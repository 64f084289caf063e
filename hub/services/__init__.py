"""Use cases: publish, search, deliver. Call the store and the domain; know nothing of gRPC."""
