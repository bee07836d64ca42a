"""Which topics of a bag to use: the colour camera, its camera_info, ground truth and earlier results.

Bags from real robots hold many image streams (RealSense: colour, aligned depth, two infrared; ZED: left, right,
depth, confidence; OAK: rgb, stereo depth, mono), usually each raw and compressed, beside IMU, TF and point
clouds. The colour camera is the Image or CompressedImage topic with a colour encoding (read from its first
message); names that say depth, disparity, infrared or confidence are skipped, ``.../compressedDepth`` too. When
a raw topic and its ``/compressed`` twin both exist the raw one is taken (no JPEG loss); names with ``color`` or
``rgb`` win over others, a left camera over a right one. What was picked, and why, goes into ``Topics.notes``
so the user sees it; every choice can be overridden by name.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import PurePosixPath

from mtshare_ros.tasks import task_spec
from mtshare_ros.tasks.depth import DEPTH_SCALE

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO = "sensor_msgs/msg/CameraInfo"
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")
COMPRESSED_CODECS = ("jpeg", "jpg", "png")
GT_EXPECTED = {
    "depth": "32FC1 metres or 16UC1 millimetres (0 = invalid)",
    "segmentation": "mono8 class ids (255 = ignore)",
    "normals": "32FC3 unit normals in the optical frame",
}
def _expected(task: str) -> str:
    """What a ground-truth topic of ``task`` must hold, for messages."""
    return GT_EXPECTED.get(task) or "one of " + ", ".join(task_spec(task).gt_encodings)


PACKAGE_GT = {"depth": "/camera/depth/image_raw", "segmentation": "/gt/segmentation", "normals": "/gt/normals"}
"""The ground truth of bags written by ``mtshare make-bag`` (``data/bag.py``), mapped without being asked."""
PACKAGE_IMAGE = "/camera/image_raw"
RESULT_ENCODINGS = {"segmentation": "mono8", "depth": "32FC1", "normals": "32FC3"}
NOT_COLOUR_WORDS = ("depth", "disparity", "infra", "confidence", "segmentation", "semantic", "instance", "normals",
                    "mask", "label")
NOT_COLOUR_SEGMENTS = {"ir", "gt"}
TRANSPORT_SUFFIXES = ("compressed", "compressedDepth", "theora", "zstd")


class BagError(Exception):
    """A bag that cannot be used as asked: the message is one line naming the file or topic and what was
    expected."""


@dataclass
class TopicSurvey:
    """One topic of the bag: its type, message count and, for images, the first message's encoding (Image) or
    format (CompressedImage)."""

    name: str
    msgtype: str
    count: int
    encoding: str = ""

    def describe(self) -> str:
        kind = self.msgtype.rsplit("/", 1)[-1]
        return f"{self.name} ({kind}{' ' + self.encoding if self.encoding else ''}, {self.count} msgs)"


@dataclass
class Topics:
    """The topics a replay reads. ``gt`` maps a task to its ground-truth topic, ``results`` an output name
    (``segmentation``, ``depth``, ``normals``) to a topic holding earlier results of this package."""

    image: str
    compressed: bool
    encoding: str
    count: int
    info: str | None = None
    gt: dict[str, str] = field(default_factory=dict)
    results: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def with_results(self, results: dict[str, str]) -> Topics:
        return replace(self, results=dict(results))


def survey(reader, path) -> dict[str, TopicSurvey]:
    """Every topic of an open ``rosbags`` reader; image topics get their first message's encoding."""
    from mtshare_ros.data.bag import _typestore
    from mtshare_ros.replay.frames import bag_messages

    ts = _typestore()
    out: dict[str, TopicSurvey] = {}
    for conn in reader.connections:
        known = out.get(conn.topic)
        out[conn.topic] = TopicSurvey(conn.topic, conn.msgtype, conn.msgcount + (known.count if known else 0))
    for topic, info in out.items():
        if info.msgtype not in (IMAGE, COMPRESSED) or info.count == 0:
            continue
        conns = [c for c in reader.connections if c.topic == topic]
        for conn, _, raw in bag_messages(reader, conns, path):
            msg = ts.deserialize_cdr(raw, conn.msgtype)
            info.encoding = msg.encoding if info.msgtype == IMAGE else msg.format
            break
    return out


def colour_problem(info: TopicSurvey) -> str:
    """'' when ``info`` is a colour image stream this package decodes, else what it is instead."""
    enc = info.encoding
    if info.msgtype == IMAGE:
        if enc in COLOUR_ENCODINGS:
            return ""
        if enc == "mono8":
            return "mono8 (grey, not colour)"
        if enc in DEPTH_SCALE or enc.startswith(("16", "32", "64")):
            return f"{enc} (depth or other non-colour data)"
        return f"encoding {enc!r} is not supported (expected one of {', '.join(COLOUR_ENCODINGS)})"
    if info.msgtype == COMPRESSED:
        fmt = enc.lower()
        if "compresseddepth" in fmt or info.name.endswith("/compressedDepth"):
            return "compressedDepth (depth)"
        raw_enc, _, codec = fmt.partition(";")
        codec = codec or raw_enc
        if not any(c in codec for c in COMPRESSED_CODECS):
            return f"format {enc!r} is not supported (expected jpeg or png)"
        if raw_enc.strip().startswith(("mono", "16u", "32f", "8uc1")):
            return f"format {enc!r} (not colour)"
        return ""
    return f"type {info.msgtype} is not an image"


def _name_problem(name: str) -> str:
    lower = name.lower()
    segments = set(PurePosixPath(lower).parts)
    for word in NOT_COLOUR_WORDS:
        if word in lower:
            return f"name says {word}"
    hit = segments & NOT_COLOUR_SEGMENTS
    return f"name says {sorted(hit)[0]}" if hit else ""


def transport_base(topic: str) -> str:
    """``/cam/image_raw/compressed`` -> ``/cam/image_raw`` (the raw topic an image_transport topic belongs to)."""
    head, _, last = topic.rpartition("/")
    return head if last in TRANSPORT_SUFFIXES and head else topic


def _rank(info: TopicSurvey) -> tuple:
    lower = info.name.lower()
    colour_words = sum(w in lower for w in ("color", "colour", "rgb"))  # ZED: rgb/image_rect_color over left/...
    return (-colour_words, "right" in lower, info.msgtype != IMAGE, -info.count, info.name)


def pick_image(
    topics: dict[str, TopicSurvey], path, exclude_prefix: str | None = None
) -> tuple[TopicSurvey, list[str]]:
    """The colour camera topic of a bag and notes on the choice; ``BagError`` when there is none."""
    candidates, skipped = [], []
    for info in topics.values():
        if info.msgtype not in (IMAGE, COMPRESSED):
            continue
        if exclude_prefix and info.name.startswith(exclude_prefix.rstrip("/") + "/"):
            continue
        reason = _name_problem(info.name) or colour_problem(info) or ("no messages" if info.count == 0 else "")
        kind = f"{info.msgtype.rsplit('/', 1)[-1]} {info.encoding}".strip()
        (skipped.append(f"{info.name} ({kind}): {reason}") if reason else candidates.append(info))
    names = {c.name for c in candidates}
    candidates = [c for c in candidates if c.msgtype == IMAGE or transport_base(c.name) not in names]
    if not candidates:
        seen = "; ".join(skipped) if skipped else "no Image or CompressedImage topics at all"
        raise BagError(f"{path}: no colour image topic (expected sensor_msgs/Image in "
                       f"{'/'.join(COLOUR_ENCODINGS)} or a jpeg/png CompressedImage; found: {seen}); "
                       "name one with --image-topic")
    candidates.sort(key=_rank)
    best = candidates[0]
    notes = [f"image topic: {best.describe()}"]
    if len(candidates) > 1:
        notes.append("other colour topics (choose with --image-topic): " + ", ".join(c.name for c in candidates[1:]))
    return best, notes


def check_image(topics: dict[str, TopicSurvey], name: str, path) -> TopicSurvey:
    """The topic named by ``--image-topic``, checked: it exists, is an image and decodes to RGB."""
    info = topics.get(name)
    if info is None:
        images = [t.name for t in topics.values() if t.msgtype in (IMAGE, COMPRESSED)]
        raise BagError(f"{path}: --image-topic {name} is not in the bag (image topics: {', '.join(images) or 'none'})")
    problem = colour_problem(info)
    if problem and not (info.msgtype == IMAGE and info.encoding == "mono8"):  # grey works when asked for by name
        raise BagError(f"{path}: --image-topic {name}: {problem}")
    if info.count == 0:
        raise BagError(f"{path}: --image-topic {name} has no messages")
    return info


def sibling_info(image: str, topics: dict[str, TopicSurvey]) -> str | None:
    """The camera_info beside an image topic: ``<dir>/camera_info`` of the image's raw topic or of one of its
    parent namespaces, nearest first (``/cam/color/image_raw/compressed`` -> ``/cam/color/camera_info``)."""
    infos = {t.name for t in topics.values() if t.msgtype == CAMERA_INFO}
    base = PurePosixPath(transport_base(image))
    for parent in base.parents:
        candidate = str(parent / "camera_info")
        if candidate in infos:
            return candidate
    return None


def check_gt(topics: dict[str, TopicSurvey], task: str, name: str, path, flag: str) -> str:
    """A ground-truth topic named on the command line: present, an Image, and in an encoding of its task."""
    info = topics.get(name)
    if info is None:
        near = [t.name for t in topics.values() if t.msgtype == IMAGE and t.encoding in task_spec(task).gt_encodings]
        raise BagError(f"{path}: {flag} {name} is not in the bag (expected a sensor_msgs/Image topic with "
                       f"{_expected(task)}; candidates: {', '.join(near) or 'none'})")
    if info.msgtype != IMAGE or info.encoding not in task_spec(task).gt_encodings:
        what = info.msgtype.rsplit("/", 1)[-1] + (f" {info.encoding}" if info.encoding else "")
        raise BagError(f"{path}: {flag} {name} is {what}, expected sensor_msgs/Image with {_expected(task)}")
    return name


def find_results(topics: dict[str, TopicSurvey], namespace: str | None = None) -> dict[str, str]:
    """Topics holding this package's raw outputs: ``<ns>/segmentation`` (mono8), ``<ns>/depth`` (32FC1),
    ``<ns>/normals`` (32FC3), in ``namespace`` or the namespace with most of them (``/gt`` excluded)."""
    by_ns: dict[str, dict[str, str]] = {}
    for info in topics.values():
        head, _, last = info.name.rpartition("/")
        if last in RESULT_ENCODINGS and info.msgtype == IMAGE and info.encoding == RESULT_ENCODINGS[last]:
            if head.rstrip("/") in ("/gt", "/camera") or (namespace is not None and head != namespace.rstrip("/")):
                continue
            by_ns.setdefault(head, {})[last] = info.name
    if not by_ns:
        return {}
    return max(by_ns.items(), key=lambda kv: (len(kv[1]), kv[0] == "/mtshare"))[1]


def choose_topics(
    topics: dict[str, TopicSurvey],
    path,
    image: str | None = None,
    info: str | None = None,
    gt: dict[str, str | None] | None = None,
    exclude_prefix: str | None = None,
) -> Topics:
    """Resolve the topics of one bag from the survey and the command line's choices (``None``: find it)."""
    if image:
        chosen, notes = check_image(topics, image, path), [f"image topic: {topics[image].describe()} (as asked)"]
    else:
        chosen, notes = pick_image(topics, path, exclude_prefix)
    if info:
        if info not in topics or topics[info].msgtype != CAMERA_INFO:
            raise BagError(f"{path}: --camera-info-topic {info} is not a sensor_msgs/CameraInfo topic of the bag")
        notes.append(f"camera_info: {info} (as asked)")
    else:
        info = sibling_info(chosen.name, topics)
        notes.append(f"camera_info: {info}" if info else
                     "camera_info: none beside the image topic (no points or scaled_camera_info; "
                     "name one with --camera-info-topic)")
    flags = {"depth": "--gt-depth-topic", "segmentation": "--gt-segmentation-topic", "normals": "--gt-normals-topic"}
    found: dict[str, str] = {}
    for task, name in (gt or {}).items():
        if name:
            found[task] = check_gt(topics, task, name, path, flags[task])
    for task, name in PACKAGE_GT.items():
        if task in found or name not in topics or (task == "depth" and chosen.name != PACKAGE_IMAGE):
            continue
        if topics[name].msgtype == IMAGE and topics[name].encoding in task_spec(task).gt_encodings:
            found[task] = name
    if found:
        notes.append("ground truth: " + ", ".join(f"{t} {n}" for t, n in found.items()))
    else:
        notes.append("ground truth: none (no metrics; name topics with --gt-depth-topic, --gt-segmentation-topic, "
                     "--gt-normals-topic)")
    if "depth" not in found:
        depth_like = [t.name for t in topics.values() if t.msgtype == IMAGE and t.encoding in DEPTH_SCALE
                      and "depth" in t.name.lower()]
        if depth_like:
            notes.append(f"sensor depth {depth_like[0]} is in the bag: --gt-depth-topic {depth_like[0]} scores depth "
                         "against it")
    return Topics(chosen.name, chosen.msgtype == COMPRESSED, chosen.encoding, chosen.count, info, found, {}, notes)
