"""Whole images: read an OCI layout or a docker save archive, push its blobs, then tag it.

Nothing here talks HTTP: blobs go through the same engine as single layers,
and the manifest through ``Registry.put_manifest``, so every backend pushes
images the same way.
"""
