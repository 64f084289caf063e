"""The gRPC edge: servicers, the handler-wrapping interceptor, the server and a client helper.

The only package that imports grpc. Protobuf ↔ domain conversion happens here, once.
"""
