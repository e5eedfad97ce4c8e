"""The narrow interface the engine pushes through, and its implementations.

The engine imports only ``uploaderd.registry.base``; which backend it talks
to (ECR, or an OCI Distribution registry) is decided where the registry object
is created (``choice.py``).
"""
