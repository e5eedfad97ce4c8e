"""The narrow interface the engine pushes through, and its implementations.

The engine imports only ``uploaderd.registry.base``; which backend it talks
to (ECR today, OCI Distribution later) is decided where the registry object
is created.
"""
