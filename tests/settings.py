"""Settings of the test suite: the one settings module, read with the test environment.

pytest-django imports this before any conftest, so the environment is in place in time.
"""

import tests.env_defaults  # noqa: F401  (sets os.environ before the settings read it)
from visio_broker.settings import *  # noqa: F403
