"""Replaying recorded camera bags through the package: ``mtshare replay`` and ``mtshare visualize``.

An application layer like ``demo.py``: it reads rosbag2 files with ``rosbags`` (no ROS install), runs the frames
through the same predictor, parameters and outputs as the node (offline) or through a node process under the
bag's own timing (live), and writes what people look at: an output bag for RViz / Foxglove, a report with
metrics, plots, a montage and a video. One module per job:

- ``topics.py``: which topic is the colour camera, its camera_info, ground truth and result topics;
- ``frames.py``: a bag's frames in order, with the messages of other topics that belong to each;
- ``params.py``: the node's parameter table resolved from defaults, a params file and ``--param``;
- ``offline.py`` / ``live.py``: the two ways of running the frames;
- ``outbag.py``: the output bag; ``evaluation.py``: metrics and per-frame records;
- ``pictures.py`` / ``plots.py`` / ``report.py``: montage and video, plots, report.md and metrics.json;
- ``cli.py`` (``mtshare replay``) and ``visualize_cli.py`` (``mtshare visualize``).
"""
