"""Which source video a clip was cut from: pure functions on clip names, tested on literal names.

Clips cut from one video look alike (same scene, actor and camera), so a split that puts some of them on each
side measures memory, not recognition. Any hold-out drawn from a training subset must keep a source video's
clips together; :func:`source_group` names that video, within the clip's class.

Rules, tried in order (the first whose pattern matches the clip's stem wins):

* UCF101: ``v_<Class>_g<GG>_c<CC>``: the group ``gGG`` (the dataset's own rule: clips of one group come from
  one long video and never straddle its official train/test lists).
* HMDB51: ``<video title>_<action>_<body>_<camera>_<people>_<view>_<quality>_<n>`` (``..._u_cm_np1_fr_med_3``):
  the title and action, lower-cased. Dropping only the trailing ``_<n>`` is not enough: clips of one video
  carry different tags (``Davos_-_Anschieben_von_Michis_Auto_push_f_cm_np1_fr_bad_0`` and ``..._np4_ba_bad_2``);
  over the 6,766 clips of the official splits, 937 videos would straddle. Matching is case-insensitive, as is
  the group (the same title appears as ``Fellowship_5`` and ``fellowship_5``).
* Any other name: lower-cased, with a trailing ``_<n>`` clip number removed.

The functions also accept WebDataset keys' stems (``lsvit.pipeline.shards.clip_key``): sanitising turns runs
of other characters into ``-`` the same way in every clip of a video, so groups computed on keys keep each
video together too (at worst two videos with names that sanitise alike share a group).
"""

import re
from collections.abc import Callable

_VIDEO_EXT = re.compile(r"[.-](?:avi|mp4|mkv|webm|mov|m4v|mpe?g|ogv|wmv|flv)$", re.IGNORECASE)
_TRAILING_NUMBER = re.compile(r"_\d+$")

# (name, pattern over the clip stem, group from the match): add a dataset by adding a rule.
RULES: list[tuple[str, re.Pattern[str], Callable[[re.Match[str]], str]]] = [
    ("ucf101", re.compile(r"^v_.+_g(?P<g>\d+)_c\d+$", re.IGNORECASE), lambda m: f"g{int(m['g']):02d}"),
    (
        "hmdb51",
        re.compile(
            r"^(?P<video>.+)_[fhlu]_(?:cm|nm)_np\d+_(?:fr|ba|le|ri)_(?:bad|med|goo)_\d+$", re.IGNORECASE
        ),
        lambda m: m["video"].lower(),
    ),
]


def clip_stem(name: str) -> str:
    """A clip's file name without folder and video extension (``walk/A_b_0.avi`` -> ``A_b_0``).

    Args:
        name: A clip name or path relative to the data root (``/`` separated), or a key's stem.

    Returns:
        The stem.
    """
    return _VIDEO_EXT.sub("", name.rsplit("/", 1)[-1])


def source_group(name: str) -> str:
    """The source video of a clip, unique within its class.

    Args:
        name: A clip name (``April_09_brush_hair_u_nm_np1_ba_goo_0.avi``), a path relative to the data root,
            or the stem of a clip's WebDataset key.

    Returns:
        The group, e.g. ``april_09_brush_hair`` (HMDB51) or ``g08`` (UCF101).
    """
    stem = clip_stem(name)
    for _, pattern, group in RULES:
        if m := pattern.match(stem):
            return group(m)
    return _TRAILING_NUMBER.sub("", stem.lower())


def key_stem(key: str, cls: str | None = None) -> str:
    """The sanitised clip stem inside a WebDataset key ``<class>__<stem>__<8 hex>``.

    Args:
        key: A sample key written by ``lsvit-pipeline extract``.
        cls: The sample's class, when known (class names may hold ``__`` in principle).

    Returns:
        The stem part of the key.
    """
    head = key.rsplit("__", 1)[0]  # drop the hash
    prefix = f"{cls}__" if cls else None
    if prefix and head.startswith(prefix):
        return head[len(prefix) :]
    return head.partition("__")[2] or head
