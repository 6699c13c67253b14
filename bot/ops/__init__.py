"""Running hubbot for a hub's IT: health checks and alerts, ``hubbot status``, ``hubbot doctor`` and the
data-protection requests (``hubbot privacy``)."""
