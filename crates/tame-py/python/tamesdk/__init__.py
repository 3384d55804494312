"""TameSDK: an alias of the ``tame`` package (same objects, same state).

``import tamesdk`` and ``import tame`` give the same classes, exceptions
and global configuration, so code written for either SDK runs unchanged.
"""

from tame import *  # noqa: F401,F403
from tame import __all__, __version__  # noqa: F401
