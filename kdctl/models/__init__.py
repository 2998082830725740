"""Modules kdctl registers into mmdet's registries.

Importing this package registers them; rendered configs do it through
``custom_imports = dict(imports=['kdctl.models'])``.
"""

from . import efficientnet_lite  # noqa: F401
from . import kd_detector  # noqa: F401
from . import checkpoint_io  # noqa: F401
from . import transforms  # noqa: F401
