"""The HTTP service (``lowbit serve``): FastAPI routes over hwsim, search and reports.

Wiring only: :mod:`.app` maps requests to the library, :mod:`.schemas` validates bodies,
:mod:`.jobs` runs each search in its own worker process (:mod:`.worker`) and keeps every
piece of state in files, so searches survive a restart of the service.
"""

from .app import MAX_BODY_BYTES, create_app

__all__ = ["MAX_BODY_BYTES", "create_app"]
