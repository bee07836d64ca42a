"""Task-domain computation sharing: the base task runs once, sub-tasks recompute only what differs.

``SharedMultiTaskModel`` (engine.py) runs it; ``SubTaskDelta`` (subtask.py) stores a sub-task as
compressed weight deltas (deltas.py) against the base; checkpoint.py saves and loads shared models.
"""

from mtshare_ros.sharing.deltas import DELTA_KINDS, compress
from mtshare_ros.sharing.engine import SharedMultiTaskModel
from mtshare_ros.sharing.subtask import SubTaskDelta

__all__ = ["DELTA_KINDS", "SharedMultiTaskModel", "SubTaskDelta", "compress"]
