"""Where the data lives: the schema, the engine and its native bulk paths, the segment filter
compiled to SQL, and the catalogue of what is stored. Imports only relq.core below it.

``from relq import store`` gives the database functions (:mod:`relq.store.database`).
"""

from relq.store.database import *  # noqa: F403
from relq.store.database import __all__  # noqa: F401
