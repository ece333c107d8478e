"""Imports every model module so Base.metadata knows every table (Alembic, tests)."""

from db import models  # noqa: F401
from db import annotation  # noqa: F401  (users, audit queue, audit assignments)
from db import listening  # noqa: F401  (clip sets, listening sessions, OVL/REL ratings)
from db import training  # noqa: F401  (training runs of `trainer run`)
from db import logins  # noqa: F401  (logins and login lockouts of the rater app, shared by its processes)
from db import media  # noqa: F401  (media grants: which clip each token stands for, and what was served)
