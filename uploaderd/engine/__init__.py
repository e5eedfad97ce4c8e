"""The upload engine: layers in flight within one byte budget, each layer's parts in order.

It pushes ``LayerJob``s through a ``Registry`` (``uploaderd.registry.base``) and
tells an ``EngineObserver`` what happens; it knows nothing of the daemon, the
command line or images.
"""
