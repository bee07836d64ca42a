"""Task-domain computation sharing, the run-time engine: the base task runs once, sub-tasks recompute only
the tokens that differ.

``SharedMultiTaskModel`` (engine.py) runs the layer loop; block_ops.py computes a block, tokens.py selects,
gathers and scatters tokens, cost.py counts what ran, run.py types the result. ``SubTaskDelta`` (subtask.py)
stores a sub-task as compressed weight deltas (deltas.py) against the base; checkpoint.py is the shared file
format and loader.py the one loader every caller uses. Training the deltas lives in ``training/``.
"""

from mtshare_ros.sharing.deltas import DELTA_KINDS, compress
from mtshare_ros.sharing.engine import SharedMultiTaskModel
from mtshare_ros.sharing.run import EngineRun, RunStats
from mtshare_ros.sharing.subtask import SubTaskDelta

__all__ = ["DELTA_KINDS", "EngineRun", "RunStats", "SharedMultiTaskModel", "SubTaskDelta", "compress"]
